"""Every user-facing message, keyed by its stable error code.

Kept in one place so that a zh-CN catalogue can sit beside the English one later. Messages say
what to change, not only what went wrong (DOMAIN.md rule 1).
"""

from __future__ import annotations

from typing import Any

EN: dict[str, str] = {
    # HTTP and request shape
    "invalid_request": "The request is not valid: {detail}",
    "not_found": "No such route: {path}.",
    "method_not_allowed": "Method {method} is not allowed on {path}.",
    "internal_error": "Something went wrong on our side. The error was logged; please retry later.",
    # Authentication and authorisation
    "missing_credentials": "Send an API key as 'Authorization: Bearer <key>'.",
    "invalid_api_key": "The API key is unknown or revoked. Ask your administrator for a new key.",
    "forbidden_role": "This action needs the role {needed}; your key acts as {role}.",
    "forbidden": "{detail}",
    # Accounts
    "organisation_not_found": "No organisation '{org}'.",
    "user_not_found": "No user '{user}'.",
    "api_key_not_found": "No API key '{key}' in your organisation.",
    "duplicate_organisation": "An organisation named '{name}' already exists; choose another name.",
    "role_kind_mismatch": "A {role} user cannot belong to a {kind} organisation; allowed roles: {allowed}.",
    # Products
    "product_not_found": "No product '{slug}' is visible to you. List products with GET /v1/products.",
    "duplicate_product": "A product with slug '{slug}' already exists; choose another slug.",
    "invalid_transition": "The product is {current}; it cannot be {action}. {hint}",
    "no_version": "Upload a version (POST /v1/products/{slug}/versions) before submitting.",
    "invalid_upload": "The file '{file}' could not be read as {kind}: {detail}",
    "unsupported_file": "The file '{file}' is neither CSV nor Parquet; upload a .csv, .csv.gz or .parquet file.",
    "invalid_table_name": "Table name '{name}' must be lower-case letters, digits and underscores.",
    "policy_column_unknown": "Column '{column}' in the policy does not exist in table '{table}'; columns: {columns}.",
    "policy_table_unknown": "The policy names table '{table}', which was not uploaded; tables: {tables}.",
    "policy_table_missing": "Table '{table}' has no protection policy; add it under policy.tables.",
    "policy_conflict": "Column '{column}' of table '{table}' has two roles; give each column one role.",
    "plan_not_found": "No plan '{plan}' on product '{slug}'; plans: {plans}.",
    # Agreements and queries
    "no_agreement": "You hold no active agreement for '{slug}'. Request access with POST /v1/access-requests.",
    "access_request_not_found": "No access request '{request}' is visible to you.",
    "request_not_pending": "The access request is {status}; only pending requests can be decided.",
    "plan_purpose_mismatch": "Plan '{plan}' is for {plan_purpose} use; purpose '{purpose}' needs a {needed} plan.",
    "duplicate_agreement": "You already hold an active agreement for '{slug}'.",
    "quota_exhausted": "The agreement's quota of {quota} queries this month is used up; ask for a larger quota.",
    "idempotency_conflict": "Idempotency-Key '{key}' was used for a different request; use a new key.",
    # Sandbox
    "sql_syntax": "The SQL could not be parsed: {detail}. Send one SELECT statement in DuckDB's dialect.",
    "multiple_statements": "Send exactly one SELECT statement; found {count}.",
    "not_a_select": "Only SELECT queries are allowed; found {kind}.",
    "unknown_table": "Table '{table}' is not part of this product; tables: {tables}.",
    "unknown_column": "Column '{column}' does not exist; columns you may use: {columns}.",
    "raw_column_output": (
        "Column '{column}' cannot be returned row by row. Group by a dimension ({dimensions}) "
        "and aggregate measures with {aggregates}."
    ),
    "measure_outside_aggregate": (
        "Measure '{column}' may only appear inside an aggregate such as sum({column}) or avg({column})."
    ),
    "protected_column": (
        "Column '{column}' identifies or is hidden and may not be output, grouped, filtered or joined on{exception}."
    ),
    "disallowed_aggregate": "{function}() can reveal a single row's value; allowed aggregates: {allowed}.",
    "disallowed_function": "Function {function}() is not allowed here; allowed functions: {allowed}.",
    "disallowed_construct": "{construct} is not allowed; {instead}",
    "star_not_allowed": "SELECT * returns raw rows; name dimensions and aggregate the measures instead.",
    "not_aggregated": (
        "The query must aggregate: GROUP BY dimensions and aggregate measures, e.g. "
        "SELECT origin, count(*) FROM flights GROUP BY origin."
    ),
    "query_failed": "DuckDB could not run the query: {detail}",
    "timeout": "The query ran longer than {seconds} seconds; narrow it with filters or fewer groups.",
    "resource_limit": "The query needed more memory than allowed ({limit}); aggregate more coarsely.",
    "too_many_rows": "The result has more than {limit} groups; aggregate more coarsely or add filters.",
    # Billing and finance
    "invalid_period": "Period '{period}' is not a month; write it as YYYY-MM, e.g. 2026-11.",
    "period_not_aligned": "Billing periods are {months} months long; '{period}' is not the first month of one.",
    "period_closed": "Period {period} is closed and locked; corrections go on a later period.",
    "period_has_drafts": "Period {period} still has draft invoices; finalize them before closing it.",
    "invoice_not_found": "No invoice '{invoice}' is visible to you. List yours with GET /v1/invoices.",
    "invoice_line_not_found": "No line '{line}' on this invoice.",
    "invalid_invoice_status": "Status '{status}' is unknown; use one of: {allowed}.",
    "invoice_not_draft": "Invoice {invoice} is {status}; only drafts can be finalized.",
    "invoice_not_voidable": (
        "Invoice {invoice} is {status} or has payments; only finalized, unpaid invoices can be voided. "
        "Issue a credit note instead."
    ),
    "invoice_not_finalized": "Invoice {invoice} is {status}; finalize it first.",
    "invoice_not_payable": "Invoice {invoice} is {status}; only finalized invoices can be paid.",
    "nothing_due": "Nothing is due on invoice {invoice}.",
    "credit_note_amount": "A credit note must be between 1 and {creditable} minor units; got {amount}.",
    "credit_note_reason_required": "Say why the credit note is issued (reason).",
    "refund_amount": "The refund ({refund}) may not exceed the credit note nor what was paid ({paid}).",
    "currency_mismatch": "The payment is in {currency} but the invoice is in {expected}.",
    "payment_amount_positive": "A payment must be a positive amount of minor units; got {amount}.",
    "payment_reference_required": "Give the bank transfer's reference (流水号) so it can be reconciled.",
    "payment_needs_invoice_or_buyer": "Name the invoice the transfer pays, or the buyer organisation that sent it.",
    "duplicate_payment_reference": "A transfer with reference '{reference}' is already recorded for this buyer.",
    "stripe_not_configured": (
        "Card payments are not configured; pay by bank transfer, or set MARKET_STRIPE_API_KEY and "
        "MARKET_STRIPE_WEBHOOK_SECRET."
    ),
    "stripe_error": "The card processor could not be reached or refused the call: {detail}. Retry later.",
    "card_declined": "The card was declined ({reason}); use another card or pay by bank transfer.",
    "webhook_signature_invalid": "The Stripe-Signature header does not match the payload; the event was ignored.",
    "invalid_payment_status": "Payment status '{status}' is unknown; use pending, succeeded or failed.",
    "shares_must_sum": "Revenue shares must add up to 10000 basis points (100%); they add up to {total}.",
    "duplicate_share_party": "Each party may appear once in the revenue shares.",
    "share_source_unknown": "'{org}' is not a source department's organisation; give the source's org_id.",
    "invalid_export_format": "Export format '{format}' is unknown; use csv or xlsx.",
    "invalid_document_format": "Document format '{format}' is unknown; use html or pdf.",
}

ZH_CN: dict[str, str] = {}
"""The zh-CN catalogue; codes missing here fall back to English."""


def render(code: str, locale: str = "en", **params: Any) -> str:
    """The message for `code` in `locale`, with `params` filled in."""
    template = (ZH_CN if locale == "zh-CN" else EN).get(code) or EN.get(code) or code
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template
