"""Contract tests: the clients against the vendors' published specs, served by Stoplight Prism."""
