"""The ARI application ``loopback``: ``python -m speaqr_sip.ari --config /etc/speaqr-sip/ari.toml``.

Modules: :mod:`.app` (event routing, call tasks, shutdown), :mod:`.events` (websocket with
reconnect), :mod:`.client` (REST), :mod:`.call` (per-call state and teardown),
:mod:`.flows` (one module per service).
"""
