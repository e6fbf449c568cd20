"""The appliance's metrics as a scraper on the appliance sees them: the ARI application's admin
endpoint (``speaqr_ari_metrics_listen``: Prometheus ``/metrics``, ``/health/ready``) and
Asterisk's ``res_prometheus`` (``/metrics`` on its loopback HTTP server). A real loopback call
moves the application's counters; ``/health/ready`` follows the database.

These tests stop MariaDB for a moment: they start it again whatever happens.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.sip.loopback import as_root, templated

# Runs on the target as root: one GET, with ari.toml's [metrics] credentials when it has some
# (read there, so no password crosses a command line); prints {"status", "body"}.
_GET = r"""
import base64, json, sys, tomllib, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    with open(sys.argv[2], "rb") as f:
        m = tomllib.load(f).get("metrics", {})
    if m.get("password"):
        token = base64.b64encode(f"{m['username']}:{m['password']}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
"""


def _get(host, url: str, *config: str) -> dict:
    with as_root(host):
        out = host.check_output("python3 -c " + " ".join(shlex.quote(a) for a in (_GET, url, *config)))
    return json.loads(out)


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def admin(host) -> dict:
    listen = templated(host, "speaqr_ari_metrics_listen")
    if not listen:
        pytest.skip("the admin endpoint is off in this inventory (speaqr_ari_metrics_listen)")
    config_dir = templated(host, "speaqr_ari_config_dir") or "/etc/speaqr-sip"
    return {"base": f"http://{listen}", "config": f"{config_dir}/ari.toml"}


def _metrics(host, admin) -> str:
    r = _get(host, admin["base"] + "/metrics", admin["config"])
    assert r["status"] == 200, r
    return r["body"]


def test_the_ari_application_exposes_its_series_and_its_real_descriptor_limit(host, admin):
    body = _metrics(host, admin)
    for series in ("speaqr_ari_calls_started_total", "speaqr_ari_call_records_pending", "process_open_fds"):
        assert f"\n{series} " in body, f"{series} missing:\n{body[:2000]}"
    assert sample(body, "speaqr_ari_ari_connected") == 1
    limit = templated(host, "speaqr_ari_limit_nofile")
    if limit:
        assert sample(body, "process_max_fds") == float(limit)


def test_metrics_without_the_credentials_are_refused_when_a_password_is_set(host, admin):
    if not templated(host, "speaqr_ari_metrics_password"):
        pytest.skip("no metrics password in this inventory (loopback only)")
    assert _get(host, admin["base"] + "/metrics")["status"] == 401


def test_asterisk_exposes_channels_endpoints_and_bridges(host):
    if not templated(host, "speaqr_asterisk_prometheus_enabled"):
        pytest.skip("res_prometheus is off in this inventory")
    bind = templated(host, "speaqr_asterisk_http_bind_address") or "127.0.0.1"
    port = templated(host, "speaqr_asterisk_http_port") or 8088
    r = _get(host, f"http://{bind}:{port}/metrics")
    assert r["status"] == 200, r
    for series in (
        "asterisk_core_uptime_seconds",
        "asterisk_channels_count",
        "asterisk_endpoints_count",
        "asterisk_bridges_count",
    ):
        assert series in r["body"], f"{series} missing:\n{r['body'][:2000]}"


def test_a_loopback_call_moves_the_counters(host, admin, sip, sip_user):
    outcome = 'speaqr_ari_calls_by_outcome_total{cause="normal",service="loopback"}'
    setup = 'speaqr_ari_call_setup_seconds_count{service="loopback"}'
    received = 'speaqr_ari_relay_packets_total{kind="received"}'
    before = _metrics(host, admin)
    r = sip.call(sip_user, "loopback", "--duration", "1")
    assert r.get("status") == 200, r
    deadline = time.monotonic() + 10
    while True:
        after = _metrics(host, admin)
        if sample(after, outcome) > sample(before, outcome) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sample(after, outcome) == sample(before, outcome) + 1, after
    assert sample(after, setup) == sample(before, setup) + 1
    assert sample(after, received) >= sample(before, received) + 25, "a second of audio did not move the relay counter"


def test_ready_follows_the_database(host, admin):
    ready = admin["base"] + "/health/ready"
    assert _get(host, ready)["status"] == 200
    try:
        with as_root(host):
            host.check_output("systemctl stop mariadb.service")
        r = _get(host, ready)
        assert r["status"] == 503 and json.loads(r["body"]) == {"ready": False, "ari": True, "database": False}, r
    finally:
        with as_root(host):
            host.check_output("systemctl start mariadb.service")
    deadline = time.monotonic() + 20
    while (r := _get(host, ready))["status"] != 200:
        assert time.monotonic() < deadline, f"not ready again after MariaDB came back: {r}"
        time.sleep(0.5)
