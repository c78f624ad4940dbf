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
    "invalid_body": "The request body could not be read: {detail}.",
    "unsupported_media_type": "Send the body as {expected}; Content-Type '{content_type}' is not accepted here.",
    "http_error": "The request was refused ({status}): {detail}.",
    # The command line (market/cli_support.py)
    "no_data_dir": (
        "Where is the marketplace? Set MARKET_DATA_DIR (e.g. export MARKET_DATA_DIR=$PWD/var), or write "
        'data_dir = "/path/to/var" in {config}; create one there with `market init` or `market demo`.'
    ),
    "invalid_config": "The configuration file {config} is not valid TOML: {detail}",
    "no_marketplace": (
        "No marketplace in {data_dir}: create an empty one with `market init`, or a demo with "
        "`market demo --keys-out FILE`, or point MARKET_DATA_DIR at an existing one."
    ),
    "cannot_write": "Cannot write {path}: {detail}; choose a path in a directory you can write to.",
    "local_file_not_found": (
        "No file '{path}' for table '{table}'; give --table {table}=FILE with an existing file, or "
        "--table {table}=UPLOAD_ID with an id from `market products upload`."
    ),
    "invalid_table_option": "--table '{value}' is not NAME=FILE or NAME=UPLOAD_ID.",
    "invalid_json_file": "{path} is not a JSON object: {detail}",
    "api_unreachable": "Cannot reach the marketplace at {api} ({detail}); check --api or MARKET_API.",
    "invalid_cursor": "The cursor is not one this list returned; pass the next_cursor of its previous page, or none.",
    "unstorable_text": (
        "{where} contains a NUL character or an unpaired surrogate (U+D800 to U+DFFF); remove it and send "
        "plain UTF-8 text."
    ),
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
    "duplicate_user": "A user with e-mail '{email}' already exists; use another address.",
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
    # Authorisations, fee caps and data resources (products.governance)
    "operator_not_found": "No operator organisation '{org}'; authorisations are granted to operator organisations.",
    "authorisation_not_found": "No authorisation '{authorisation}' is visible to you.",
    "authorisation_transition": "The authorisation is {status}; it cannot be {action}d.",
    "no_authorisation": "Your organisation holds no authorisation in force; ask the data authority for one.",
    "authorisation_expired": "Your organisation's authorisation has expired; ask the data authority to renew it.",
    "outside_authorisation": (
        "Zone '{zone}' in region '{region}' is outside your authorisation ({scope}); "
        "choose a zone and region inside it or ask the data authority to extend it."
    ),
    "scenario_outside_authorisation": (
        "Scenarios {scenarios} are outside your authorisation; allowed scenarios: {allowed}."
    ),
    "fee_above_cap": (
        "Plan '{plan}' sets {field} = {amount}, above the fee cap of {cap} for zone '{zone}'; "
        "price at or under the cap."
    ),
    "plan_currency_mismatch": "Plan '{plan}' is priced in {currency}; your authorisation caps fees in {allowed}.",
    "authorisation_inactive": (
        "The operator of '{slug}' no longer holds an authorisation in force for it, so it is not served; "
        "your agreement resumes if the data authority reinstates it."
    ),
    "product_delisted": "'{slug}' has been delisted and is not served; see GET /v1/products for listed products.",
    "resource_not_found": "No data resource '{resource}' is visible to you.",
    "resource_not_pending": "The resource is {status}; only pending resources can be reviewed.",
    "resource_not_returned": "The resource is {status}; only returned resources can be revised.",
    "resource_not_registered": (
        "Data resource '{resource}' is not registered; products derive only from registered resources."
    ),
    "resource_core": "Data resource '{resource}' is classified core; core data cannot be operated as a product.",
    "resource_outside_zone": (
        "Data resource '{resource}' is in zone '{zone}'; the product is in zone '{product_zone}'."
    ),
    "duplicate_registration_code": (
        "Registration code '{registration_code}' is already used; choose another or leave it empty."
    ),
    "review_outside_authorisation": "The product cannot be listed: {detail}",
    "audit_findings_open": (
        "Version {number} has {count} open irreversibility audit finding(s) ({findings}). Fix the recipe and "
        "upload a new version, or resolve each finding with a justification, before submitting."
    ),
    # Uploads, recipes and the irreversibility audit (products.pipeline)
    "upload_too_large": "The upload exceeds {limit_gib} GiB; split it per table or per period.",
    "upload_empty": "The file '{file}' is empty; send the file's bytes as the request body.",
    "upload_not_found": "No upload '{upload}' in your organisation; upload with POST /v1/uploads?filename=...",
    "recipe_column_unknown": (
        "The recipe reads column '{column}', which table '{table}' does not have; columns: {columns}."
    ),
    "recipe_table_mismatch": "The recipe covers tables {recipe} but the version has tables {tables}; make them match.",
    "policy_column_not_produced": (
        "Column '{column}' in the policy is not an output column of table '{table}' in the recipe; outputs: {columns}."
    ),
    "version_not_found": "Product '{slug}' has no version {number} visible to you.",
    "version_in_progress": "Another version of '{slug}' was stored at the same time; retry to build the next one.",
    "not_rebuildable": "Version {number} was not built from stored uploads; build a new version with POST .../builds.",
    "quarantine_not_found": "Version {number} quarantined no rows of table '{table}'.",
    "finding_not_found": "Version {number} has no audit finding '{finding}'; findings: {findings}.",
    # Agreements and queries
    "no_agreement": "You hold no active agreement for '{slug}'. Request access with POST /v1/access-requests.",
    "access_request_not_found": "No access request '{request}' is visible to you.",
    "request_not_pending": "The access request is {status}; only pending requests can be decided.",
    "plan_purpose_mismatch": "Plan '{plan}' is for {plan_purpose} use; purpose '{purpose}' needs a {needed} plan.",
    "duplicate_agreement": "You already hold an active agreement for '{slug}'.",
    "quota_exhausted": "The agreement's quota of {quota} queries this month is used up; ask for a larger quota.",
    "idempotency_conflict": "Idempotency-Key '{key}' was used for a different request; use a new key.",
    # Metering: access requests, agreements, quotas, usage and audit
    "scenario_required": "Name the scenario you will use the data in, e.g. 'route-planning'.",
    "scenario_not_allowed": "Scenario '{scenario}' is not allowed for this product; allowed scenarios: {allowed}.",
    "duplicate_request": (
        "You already have a pending access request for '{slug}' with this purpose; "
        "wait for its decision (GET /v1/access-requests)."
    ),
    "reason_required": "Give a reason; the other side sees it and needs to know what to change.",
    "quota_required": (
        "A public-interest approval needs a quota: give monthly_query_quota, monthly_row_quota or monthly_byte_quota."
    ),
    "agreement_not_found": "No agreement '{agreement}' is visible to you. List yours with GET /v1/agreements.",
    "agreement_not_active": "Agreement '{agreement}' is {status}; only active agreements can be revoked.",
    "agreement_revoked": (
        "Agreement '{agreement}' was revoked ({reason}). Request access again with POST /v1/access-requests."
    ),
    "agreement_expired": (
        "Agreement '{agreement}' expired on {until}. Request access again with POST /v1/access-requests."
    ),
    "row_quota_exhausted": (
        "This query would scan {needed} rows, but {used} of the agreement's {quota} rows this month are used; "
        "filter or aggregate less data, or ask for a larger quota."
    ),
    "byte_quota_exhausted": (
        "This query would scan {needed} bytes, but {used} of the agreement's {quota} bytes this month are used; "
        "use fewer columns, or ask for a larger quota."
    ),
    "usage_record_not_found": "No query '{record}' in the usage log.",
    "agreement_not_yours": (
        "Agreement '{agreement}' is not one of yours on '{slug}'; list yours with GET /v1/agreements."
    ),
    "agreement_not_started": "Agreement '{agreement}' is valid from {since}; query again then.",
    "invalid_date_range": "The range from {since} to {until} ends before it starts; swap the dates.",
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
    "sql_too_long": "The SQL is {length} characters long; send at most {limit}.",
    "sql_too_complex": "The SQL nests expressions {depth} levels deep; use at most {limit} levels.",
    "parser_mismatch": (
        "The query could not be confirmed by DuckDB's own parser ({detail}); "
        "write it with plain SELECT, FROM, JOIN, WHERE, GROUP BY, HAVING and ORDER BY."
    ),
    "reserved_name": "The name '{name}' is reserved (names starting with __ are the sandbox's own); rename it.",
    "alias_shadows_column": "The alias '{alias}' is also a column's name; choose an alias no column has.",
    "targeted_aggregate": (
        "{construct} inside {function}() can single out or reweight rows; inside an aggregate use only "
        "measure columns, numbers, + - * / and numeric casts, and filter with WHERE or GROUP BY a dimension."
    ),
    "nonlinear_aggregate": (
        "Measure '{column}' appears twice inside {function}(): products and powers of a value can "
        "reconstruct single rows; use each measure once per aggregate (variance is available as var_pop)."
    ),
    "not_grouped": "Column '{column}' must be in GROUP BY or inside an aggregate.",
    "invalid_structured_query": "The structured query is not valid: {detail}",
    # Billing and finance
    "invalid_period": "Period '{period}' is not a month; write it as YYYY-MM, e.g. 2026-11.",
    "period_out_of_range": "Period '{period}' is outside the years {first} to {last}; give a year in that range.",
    "period_not_aligned": "Billing periods are {months} months long; '{period}' is not the first month of one.",
    "period_closed": "Period {period} is closed and locked; corrections go on a later period.",
    "period_has_drafts": "Period {period} still has draft invoices; finalize them before closing it.",
    "period_has_open_mismatches": (
        "Period {period} has {count} open reconciliation mismatches ({reasons}). Resolve each, or acknowledge it "
        "with a reason (POST /v1/billing/periods/{period}/acknowledgements), then close the period."
    ),
    "acknowledgement_note_required": "Say why the mismatch is accepted: the note is kept and shown to the regulator.",
    "mismatch_not_found": (
        "Period {period} has no open mismatch with key '{key}'. "
        "Take the key from GET /v1/reconciliation?period={period}."
    ),
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
