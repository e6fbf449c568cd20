"""pjsua2-based SIP test client (TLS + SDES-SRTP + one codec); CLI: ``python -m tests.sipclient``."""
