"""Every user-facing message, keyed by its stable error code.

The EN dict is the single source of msgids: `make messages` extracts each entry, with its code as
msgctxt, into the gettext catalogues (market/locale/<locale>/LC_MESSAGES/messages.po), where the
zh-CN translation sits. Messages say what to change, not only what went wrong (DOMAIN.md rule 1).
"""

from __future__ import annotations

from typing import Any

from market import i18n

EN: dict[str, str] = {
    # HTTP and request shape
    "invalid_request": "The request is not valid: {detail}",
    "not_found": "No such route: {path}.",
    "page_not_found": "There is no page at {path}. The link may be old or mistyped; start again from the catalogue.",
    "method_not_allowed": "Method {method} is not allowed on {path}.",
    "internal_error": "Something went wrong on our side. The error was logged; please retry later.",
    "database_busy": "The service is busy and nothing was changed; retry in a moment.",
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
    "cannot_change_own_account": "You cannot change your own role or deactivate yourself; ask another admin.",
    "invalid_amount": "Write the amount as a number with at most two decimals, e.g. 120.50; got '{amount}'.",
    "api_key_not_found": "No API key '{key}' in your organisation.",
    "duplicate_organisation": "An organisation named '{name}' already exists; choose another name.",
    "duplicate_user": "A user with e-mail '{email}' already exists; use another address.",
    "role_kind_mismatch": "A {role} user cannot belong to a {kind} organisation; allowed roles: {allowed}.",
    "uscc_length": "Unified social credit code '{code}' has {length} characters; it must have 18.",
    "uscc_characters": (
        "Unified social credit code '{code}' contains {characters}; it may use only these characters: {alphabet}."
    ),
    "uscc_division": (
        "Unified social credit code '{code}' must have digits in positions 3 to 8 (the administrative division code)."
    ),
    "uscc_checksum": (
        "Unified social credit code '{code}' fails its check character (the 18th); check it for a typing error."
    ),
    "invalid_bank_account": (
        "Bank account '{account}' must be 8 to 40 digits, optionally grouped with spaces or hyphens."
    ),
    # Products
    "product_not_found": "No product '{slug}' is visible to you. List products with GET /v1/products.",
    "duplicate_product": "A product with slug '{slug}' already exists; choose another slug.",
    "invalid_transition": "The product is {current}; it cannot be {action}. {hint}",
    "no_version": "Upload a version (POST /v1/products/{slug}/versions) before submitting.",
    "invalid_upload": "The file '{file}' could not be read as {kind}: {detail}",
    "unsupported_file": (
        "The file '{file}' is neither CSV, a spreadsheet nor Parquet; upload a .csv, .csv.gz, .tsv, .xlsx, .xls, "
        ".ods or .parquet file."
    ),
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
    "spreadsheets_busy": (
        "Other spreadsheets are being read and none finished within {seconds} s; send this one again after the "
        "seconds in Retry-After, or send it as CSV."
    ),
    "upload_too_large": "The upload exceeds {limit_gib} GiB; split it per table or per period.",
    "upload_empty": "The file '{file}' is empty; send the file's bytes as the request body.",
    "upload_not_found": "No upload '{upload}' in your organisation; upload with POST /v1/uploads?filename=...",
    "build_not_found": "No build '{build}' of this product; start one from the product's Upload and build page.",
    "build_interrupted": (
        "The build stopped without finishing (the server restarted or was stopped); start the build again."
    ),
    "build_failed": "The build failed on our side and nothing was stored; start it again, or tell the operator team.",
    "upload_session_not_found": (
        "No resumable upload '{session}' in your organisation; choose the file again to start over."
    ),
    "upload_offset_mismatch": "The server has {offset} bytes of this upload, not {start}; resume from byte {offset}.",
    "upload_range_invalid": (
        "Send each part with a Content-Range header 'bytes START-END/{size}' inside the file's {size} bytes."
    ),
    "upload_size_invalid": "Give the file's size in bytes (1 to {limit_gib} GiB) when starting a resumable upload.",
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
    "too_many_queries": (
        "Your organisation already has {limit} queries in flight, the most it may run at once; wait for one "
        "to finish (see Retry-After) or send fewer queries in parallel."
    ),
    "sandbox_busy": (
        "Every sandbox worker is busy and no place in the queue came free within {seconds} s; retry after "
        "the seconds in Retry-After."
    ),
    "service_unavailable": "The service cannot serve right now ({detail}); retry after the seconds in Retry-After.",
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
    "join_fanout": (
        "Joining {table} on {column} can match up to {fanout} of its rows for one row (rounded up to a power of "
        "two); with all the query's joins one row can meet up to {product} rows, over the limit of {limit}. Join "
        "on a more selective key (fewer rows share each value), or aggregate {table} by the key first (ask the "
        "seller for a table with one row per key) and join that."
    ),
    "star_not_allowed": "SELECT * returns raw rows; name dimensions and aggregate the measures instead.",
    "not_aggregated": (
        "The query must aggregate: GROUP BY dimensions and aggregate measures, e.g. "
        "SELECT origin, count(*) FROM flights GROUP BY origin."
    ),
    "query_failed": "DuckDB could not run the query: {detail}",
    "timeout": "The query ran longer than {seconds} seconds; narrow it with filters or fewer groups.",
    "query_cancelled": "The query was cancelled at your request and was not charged; run it again when you are ready.",
    "answer_out_of_range": (
        "A value the query computes (in its answer, or a constant) is out of the range an answer can carry: an "
        "INTERVAL beyond about 2.7 million years (999,999,999 days); use smaller intervals, or return a number "
        "of days or months instead."
    ),
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
        "measure columns, numbers, + - *, division by a number and CAST(... AS DOUBLE), and filter with "
        "WHERE or GROUP BY a dimension."
    ),
    "cast_in_aggregate": (
        "A cast to {target} inside {function}() can turn chosen rows into NULL or an error (a narrower type) "
        "or overflow (a wider one); values inside aggregates are computed as DOUBLE already, so leave it out."
    ),
    "division_by_column": (
        "Inside {function}() you may divide only by a non-zero number: dividing by a column can single out "
        "rows. Divide the aggregates instead, e.g. sum(a) / sum(b)."
    ),
    "post_aggregate_may_fail": (
        "{expression} is date or INTERVAL arithmetic on an aggregate or a group key, which fails for some of "
        "their values (out of range, or a division by zero); select the number itself and apply the unit in "
        "your application, or group by a date with date_trunc()."
    ),
    "aggregate_may_overflow": (
        "A value inside {function}() could exceed {limit} in magnitude for measures within their declared "
        "bounds; use smaller numbers, or aggregate the measures separately and combine the results."
    ),
    "unbounded_measure": (
        "Measure '{column}' has no declared bounds, so {function}() of it is not allowed (only count); "
        "the operator declares a measure's bounds in the product's policy."
    ),
    "text_cast": (
        "The query converts text to {target}, which fails for some values; compare text with quoted text "
        "and numbers with numbers, without casting text."
    ),
    "unsafe_cast": (
        "The query converts {source} to {target}, which can fail for some values (CAST and TRY_CAST alike: a "
        "conversion that fails takes longer, which would tell hidden rows apart); compare values of the same "
        "type, cast to a wider type (BIGINT, DOUBLE, VARCHAR), or round with round(), floor() or ceil() "
        "instead of casting to a narrower number type."
    ),
    "wide_decimal_cast": (
        "The query converts {column} ({source}) to {target}, by a cast or through arithmetic or a numeric "
        "function (which the sandbox computes in DOUBLE): converting a DECIMAL of more than 15 digits with "
        "decimals to a floating-point type takes longer for some values than for others, which would tell "
        "hidden rows apart. Compare it with a decimal literal ({column} > 1.5, not 1.5e0), group by it or show "
        "it as it is, without arithmetic, numeric functions (abs, round, floor) or a CAST to DOUBLE or FLOAT."
    ),
    "wide_decimal_operation": (
        "The query converts {column} ({source}) to {target}: on a DECIMAL of more than 18 digits with decimals, "
        "a cast to text, to an integer or to fewer decimals takes longer for some values than for others, "
        "which would tell hidden rows apart. Compare it with a decimal literal ({column} > 1.5), group by it "
        "or show it as it is."
    ),
    "constant_error": (
        "A constant in the query cannot be computed ({detail}); constants are checked whether or not "
        "their branch is reached, so fix or remove it."
    ),
    "measure_out_of_bounds": (
        "Measure '{column}' of table '{table}' has values from {low} to {high} (or non-finite ones), outside its "
        "declared bounds [{min}, {max}]; widen the bounds in the policy, or clean the values in the recipe."
    ),
    "date_out_of_range": (
        "Column '{column}' of table '{table}' has {count} date(s) or time(s) outside {low} to {high}, the range a "
        "product may hold (infinity is refused too): date_trunc() fails on some of them, and costs less on others. "
        "Give the column min '{low}' and max '{high}' in the recipe (rows outside are then rejected or "
        "quarantined), or correct the values in the source."
    ),
    "measure_not_numeric": (
        "Measure '{column}' of table '{table}' has type {type}; bounds, sums and averages need a numeric column."
    ),
    "dp_unsupported": ("{construct} cannot be answered with differential privacy on this product; {instead}"),
    "privacy_budget_exhausted": (
        "This query would spend epsilon {cost}, but only epsilon {left} is left of {scope}; "
        'spend less (a smaller "epsilon" in the request, or a repeat of an earlier query, which is free), '
        "or ask for a new agreement on a newer version."
    ),
    "privacy_delta_exhausted": (
        "This query's groups pass a noisy threshold, which spends delta {cost}, but only delta {left} is left of "
        "{scope}; group by dimensions with public keys (their groups need no threshold and spend no delta), "
        "repeat an earlier query (free), or ask for a new agreement on a newer version."
    ),
    "privacy_epsilon_out_of_range": (
        "epsilon {epsilon} is outside this plan's limits; choose an epsilon from {low} to {high} for one query."
    ),
    "not_dp_product": (
        'Product \'{slug}\' answers exactly (threshold mode), so "epsilon" and "dry_run" do not apply; '
        "send the query without them."
    ),
    "dp_required": (
        'Products whose privacy unit is {reason} must use differential privacy; set the policy\'s "mode" '
        'to "dp" with its "dp" parameters and upload a new version.'
    ),
    "dp_required_by_authorisation": (
        "The operator's authorisation requires differential privacy for '{what}'; set the policy's \"mode\" "
        'to "dp" with its "dp" parameters and upload a new version.'
    ),
    "groups_under_k_omitted": (
        "Groups with fewer than {k} distinct privacy units are omitted from every answer, and an aggregate "
        "is null where fewer than {k} units have a non-null value for it; how many were omitted is not "
        "reported, because it depends on rows you may not see."
    ),
    "not_typeable": (
        "DuckDB could not type the query before running it ({detail}); write it more simply, "
        "with plain comparisons and the allowed functions."
    ),
    "expression_too_costly": (
        "{construct} can make a string up to {growth} times longer than its input; the limit is {limit}. "
        "Use fewer nested replace() calls or concatenations."
    ),
    "nonlinear_aggregate": (
        "Measure '{column}' appears twice inside {function}(): products and powers of a value can "
        "reconstruct single rows; use each measure once per aggregate (variance is available as var_pop)."
    ),
    "not_grouped": "Column '{column}' must be in GROUP BY or inside an aggregate.",
    "invalid_structured_query": "The structured query is not valid: {detail}",
    # Public-data rules (market/compliance): allowed revenue, fee standards, registration, disclosure
    "allowed_revenue_not_found": (
        "No allowed revenue is recorded for operator '{operator}' in {year}; the regulator records it with "
        "PUT /v1/allowed-revenue/{operator}/{year}."
    ),
    "allowed_revenue_closed": (
        "{year} is closed and its carry-forward recorded; its figures can no longer change. Record next year's instead."
    ),
    "year_not_ended": "{year} has not ended yet; close it from 1 January of the next year.",
    "fee_standard_not_in_review": (
        "A fee standard is set on a product under review or listed; this product is {status}."
    ),
    "fee_standard_above_cap": (
        "The fee standard's {field} ({amount}) is above the {zone} fee cap ({cap}); set it at or under the cap."
    ),
    "plan_above_fee_standard": (
        "Plan '{plan}' charges {field} {amount}, above the proposed fee standard ({standard}); have the operator "
        "lower the plan first, or set a higher standard."
    ),
    "already_registered": "This is already registered as '{registration_code}'.",
    "registration_needs_review": "Only a submitted or listed product can be registered; this product is {status}.",
    "registration_not_found": "No registration '{registration}'. Check the registration code or lookup code.",
    "registration_code_too_long": "A registration or lookup code has at most 64 characters.",
    "notice_closed": (
        "The public notice of '{registration_code}' is closed; objections are taken only during the notice period."
    ),
    "objection_not_found": "No objection '{objection}' on this registration.",
    "objection_resolved": "This objection is already {status}.",
    "registration_not_confirmable": (
        "The registration is {status}, or its notice has not ended, or an objection is still open; resolve "
        "objections and wait for the end of the notice."
    ),
    "disclosure_published": (
        "The {kind} for {year} is published and frozen; it cannot be regenerated. Publish corrections separately."
    ),
    "disclosure_not_found": "No report '{report}' is visible to you.",
    "notification_not_found": "No notification '{notification}' of yours.",
    "audit_flag_not_found": "No audit flag '{flag}'. List flagged queries with GET /v1/audit/queries?flagged=true.",
    "audit_flag_resolved": "Audit flag '{flag}' is already resolved; flag the query again for a new follow-up.",
    # Notifications: subject and body of each kind (market/notifications, market/compliance/jobs.py)
    "allowed_revenue_approaching_subject": "{operator}: {percent}% of the {year} allowed revenue received",
    "allowed_revenue_approaching_body": (
        "{operator} has received {received} of its allowed revenue of {allowed} (minor units, {currency}) for "
        "{year}. Past 100%, the excess is deducted from next year's allowed revenue."
    ),
    "allowed_revenue_exceeded_subject": "{operator}: the {year} allowed revenue is exceeded",
    "allowed_revenue_exceeded_body": (
        "{operator} has received {received} against an allowed revenue of {allowed} (minor units, {currency}) "
        "for {year}. The excess will be deducted from next year's allowed revenue."
    ),
    "objection_filed_subject": "Objection filed against registration {registration_code}",
    "objection_filed_body": "An objection was filed against '{title}' ({registration_code}) during its public notice.",
    "objection_resolved_subject": "Objection to {registration_code}: {decision}",
    "objection_resolved_body": "The regulator {decision} the objection to {registration_code}: {resolution}",
    "registration_confirmed_subject": "Registration {registration_code} confirmed",
    "registration_confirmed_body": (
        "'{title}' is registered as {registration_code}; lookup code {lookup_code}. Anyone can check it at "
        "/registrations/{lookup_code}."
    ),
    "authorisation_expired_subject": "Authorisation {authorisation} has expired",
    "authorisation_expired_body": (
        "Authorisation {authorisation} reached the end of its validity. Products it no longer covers were "
        "delisted and their agreements stopped: {delisted}. Ask the regulator for a renewal."
    ),
    "agreement_stopped_subject": "Agreement {agreement} stopped",
    "agreement_stopped_body": "Agreement {agreement} was stopped: {reason}",
    "agreement_expired_subject": "Agreement {agreement} expired",
    "agreement_expired_body": (
        "Agreement {agreement} reached its end date ({valid_until}). Request access again to keep querying."
    ),
    "review_overdue_subject": "Access request {request} is past its review deadline",
    "review_overdue_body": (
        "The access request {request} for {product} was due for a decision on {due}. Approve or reject it."
    ),
    "privacy_budget_subject": "Agreement {agreement}: {threshold}% of its privacy budget is spent",
    "privacy_budget_body": (
        "Agreement {agreement} on {product} has spent epsilon {spent} of its lifetime privacy budget of epsilon "
        "{budget} ({threshold}% threshold). Budgets never refresh on the same data: repeat earlier queries "
        "(free), spend a smaller epsilon per query, or request access to a newer version."
    ),
    "privacy_cap_subject": "{product} version {version}: {threshold}% of its privacy cap is spent",
    "privacy_cap_body": (
        "Across all agreements, version {version} of {product} has spent epsilon {spent} of the regulator's cap "
        "of epsilon {budget} ({threshold}% threshold). Once it is spent, no buyer can query this version; "
        "new data needs a new version, reviewed with its own cap."
    ),
    "invoice_due_subject": "Invoice {invoice} falls due on {due}",
    "invoice_due_body": "Invoice {invoice} has {amount} (minor units, {currency}) to pay by {due}.",
    "invoice_overdue_subject": "Invoice {invoice} is overdue",
    "invoice_overdue_body": (
        "Invoice {invoice} was due on {due} and {amount} (minor units, {currency}) is still unpaid. Pay by card "
        "or bank transfer, quoting the invoice number."
    ),
    # Billing and finance
    "invalid_period": "Period '{period}' is not a month; write it as YYYY-MM, e.g. 2026-11.",
    "period_out_of_range": "Period '{period}' is outside the years {first} to {last}; give a year in that range.",
    "period_not_aligned": "Billing periods are {months} months long; '{period}' is not the first month of one.",
    "period_closed": "Period {period} is closed and locked; corrections go on a later period.",
    "period_in_future": "Period {period} has not begun; bill, finalize or close it once it has ended, on {end}.",
    "period_not_ended": "Period {period} has not ended; bill, finalize or close it from {end} on.",
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
    "credit_note_not_found": "No credit note '{note}' is visible to you. List yours with GET /v1/credit-notes.",
    "invalid_invoice_status": "Status '{status}' is unknown; use one of: {allowed}.",
    "invoice_not_draft": "Invoice {invoice} is already {status} (number {number}); only drafts can be finalized.",
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
    "too_many_sign_ins": "Too many failed sign-ins; wait {minutes} minutes and try again, or ask an admin to set "
    "a new password.",
    "password_too_short": "The password is too short; use at least {minimum} characters.",
    "sign_in_required": "Sign in to see this page.",
    "sign_in_failed": "The e-mail address or the password is wrong. Check both and try again.",
    "invalid_purpose": "Choose a purpose: {purposes}.",
    "csrf_failed": "This form has expired or did not come from this site; reload the page and send it again.",
    # The regulator's and source departments' console forms (market/console/regulator, market/console/source.py)
    "console_invalid_amount": "{field}: '{value}' is not an amount; give yuan with at most two decimals, e.g. 12.50.",
    "console_invalid_date": "{field}: '{value}' is not a date; give it as YYYY-MM-DD.",
    "console_zones_required": "Choose at least one zone; each chosen zone takes the fee cap on its row.",
    "console_regions_required": "Choose at least one region in the tree, or type a division code such as CN-11.",
    "console_invalid_region": "'{region}' is not a division code; give one such as CN-11 or CN-11-05.",
    "console_invalid_validity": (
        "Give 'valid until' as a date after 'valid from' (after today when 'valid from' is empty)."
    ),
    "console_unknown_action": "'{action}' is not an action on this page.",
    "console_reason_required": "Give a reason; it is recorded and the other side reads it.",
    "console_comment_required": "Give comments: the other side needs to know what to change.",
    "console_invalid_number": "'{value}' is not a whole number; give digits only, e.g. 1000.",
    "console_title_required": "Give the resource a title.",
    "console_zone_required": "Choose the resource's zone.",
    "console_resolution_required": "Say what the follow-up found before resolving the flag.",
    "console_invalid_window": "Choose at most {days} days, with 'from' on or before 'to'.",
    "console_invalid_year": "'{value}' is not a year; give one between 2000 and 2100.",
    "console_unknown_figure": "No figure '{figure}'; choose one of {figures}.",
    "console_invalid_epsilon": "'{value}' is not an epsilon; give a number above 0 and at most 10, e.g. 0.5.",
    "console_invalid_percent": (
        "{field}: '{value}' is not a share; give a percentage from 0 to 100 with at most two decimals, e.g. 12.5."
    ),
    "price_not_a_number": "'{value}' is not a price; type an amount in yuan such as 1.50, at or above 0.",
    "recipe_privacy_unit": "Choose exactly one column as the privacy unit: the person or company that must not be "
    "traced.",
    "finding_justification_short": "Say in at least 10 characters why the finding is not a risk; the regulator "
    "reads it in review.",
    "invalid_quota": "'{value}' is not a quota; type a whole number of queries, 1 or more, or leave it empty.",
    "upload_sign_in": "Your session has ended; sign in again, then retry the upload.",
}


def render(code: str, locale: str | None = None, /, **params: Any) -> str:
    """The message for `code` in `locale` (default: the current request's), with `params` filled in."""
    english = EN.get(code)
    if english is None:
        return code
    locale = locale or i18n.current_locale()
    return i18n.pgettext(locale, code, english, **i18n.translated(locale, params))
