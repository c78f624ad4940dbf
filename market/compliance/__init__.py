"""Public-data rules in code: allowed revenue, fee standards, registration with public notice,
annual disclosure and operating reports, and the jobs that keep states true."""
