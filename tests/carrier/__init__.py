"""Stand-in carrier for the call service tests: ``python -m tests.carrier`` (see README.md)."""
