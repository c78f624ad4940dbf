"""The query sandbox: validates buyer SQL against a protection policy and runs it, aggregate-only, on DuckDB.

It knows nothing of the database, accounts or money. Callers hand it a policy, the product
version's Parquet files and the buyer's SQL; it hands back aggregates and measurements.
"""
