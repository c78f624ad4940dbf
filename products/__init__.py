"""Data products: versions stored as immutable Parquet, protection policies, price plans, review, catalogue."""
