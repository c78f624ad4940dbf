"""Billing: periods, invoices, payments (Stripe or bank transfer), revenue shares, ledger and reconciliation."""
