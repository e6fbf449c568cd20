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

from tests.sip.call_harness import ARI_SERVICE, Target
from tests.sip.loopback import as_root

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
    """The value of ``series`` (a name, or a name with its labels as exposed); 0 when absent."""
    for line in text.splitlines():
        name = line.split("{", 1)[0] if "{" not in series else line.rsplit(" ", 1)[0]
        if line and not line.startswith("#") and name.split(" ")[0] == series:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# What the appliance runs with: its rendered configuration, not the inventory (role defaults
# apply where the inventory says nothing).
_DEPLOYED = r"""
import configparser, json, tomllib
with open("/etc/speaqr-sip/ari.toml", "rb") as f:
    metrics = tomllib.load(f).get("metrics", {})
def ini(path):
    c = configparser.ConfigParser(strict=False, inline_comment_prefixes=(";",))
    c.read(path)
    return c
http, prom = ini("/etc/asterisk/http.conf"), ini("/etc/asterisk/prometheus.conf")
print(json.dumps({
    "listen": metrics.get("listen", ""),
    "password_set": bool(metrics.get("password")),
    "asterisk": f"{http.get('general', 'bindaddr')}:{http.get('general', 'bindport')}",
    "asterisk_enabled": prom.has_section("general") and prom.get("general", "enabled") == "yes",
}))
"""


@pytest.fixture(scope="module")
def deployed(host) -> dict:
    with as_root(host):
        return json.loads(host.check_output("python3 -c " + shlex.quote(_DEPLOYED)))


@pytest.fixture(scope="module")
def admin(deployed) -> dict:
    if not deployed["listen"]:
        pytest.skip("the admin endpoint is off on this host ([metrics] listen)")
    return {"base": f"http://{deployed['listen']}", "config": "/etc/speaqr-sip/ari.toml"}


def _metrics(host, admin) -> str:
    r = _get(host, admin["base"] + "/metrics", admin["config"])
    assert r["status"] == 200, r
    return r["body"]


def test_the_ari_application_exposes_its_series_and_its_real_descriptor_limit(host, admin):
    body = _metrics(host, admin)
    for series in ("speaqr_ari_calls_started_total", "speaqr_ari_call_records_pending", "process_open_fds"):
        assert f"\n{series} " in body, f"{series} missing:\n{body[:2000]}"
    assert sample(body, "speaqr_ari_ari_connected") == 1
    pid = Target(host).main_pid(ARI_SERVICE)
    with as_root(host):
        limits = host.check_output(f"cat /proc/{pid}/limits")
    soft = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
    assert sample(body, "process_max_fds") == float(soft), "process_max_fds is not the running process's limit"
    assert 0 < sample(body, "process_open_fds") < float(soft)


def test_metrics_without_the_credentials_are_refused_when_a_password_is_set(host, admin, deployed):
    if not deployed["password_set"]:
        pytest.skip("no metrics password on this host (loopback only)")
    assert _get(host, admin["base"] + "/metrics")["status"] == 401


def test_asterisk_exposes_channels_endpoints_and_bridges(host, deployed):
    if not deployed["asterisk_enabled"]:
        pytest.skip("res_prometheus is off on this host")
    r = _get(host, f"http://{deployed['asterisk']}/metrics")
    assert r["status"] == 200, r
    for series in (
        "asterisk_core_uptime_seconds",
        "asterisk_channels_count",
        "asterisk_endpoints_count",
        "asterisk_bridges_count",
    ):
        assert f"\n{series}" in r["body"], f"{series} missing:\n{r['body'][:2000]}"
    assert sample(r["body"], "asterisk_core_uptime_seconds") > 0


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
