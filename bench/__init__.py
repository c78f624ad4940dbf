"""Benchmarks: each prints ratios and times measured side by side in one run (see docs/benchmarks.md)."""
