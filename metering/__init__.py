"""The demand side: access requests, agreements, pricing, quotas, and one usage record per query attempt."""
