"""Loopback vendor servers for the connector tests and the connector benchmark.

Each fake speaks the documented protocol of its vendor (paths, paging, limits, error bodies), runs
in a thread on 127.0.0.1 on a free port, records what it received, and can be told to throttle with
429 + Retry-After, fail with 5xx before or after applying a write, and enforce a rolling rate limit.
"""
