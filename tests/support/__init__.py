"""Fixtures and helpers shared by test files of several directories (tests/metering, tests/sandbox, ...)."""
