"""The marketplace application: settings, database, accounts, HTTP app, CLI and the shared core."""
