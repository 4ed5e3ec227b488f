"""Fixtures of the notify tests. The channel tests start their own SMTP and HTTP receivers (tests/support/sinks.py)."""
