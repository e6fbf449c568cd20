"""Helpers of the loopback-service tests (tests/sip/test_loopback_*.py): the target's logs, its
ARI, its services, and which users exercise which processor, all through testinfra's ``host``.

Nothing here is hard-coded to the lab: users, processors and paths come from the host's
inventory (templated by Ansible, vault applied), like the rest of tests/sip.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from dataclasses import dataclass, field

import pytest

from tests.sip.harness import SipClient

# Where the lines of a refusal are: the AGI check (syslog ident speaqr-agi, plain or FastAGI),
# the ARI application (its unit's journal), and the dialplan's Log() lines (messages.log).
AGI_IDENT = "speaqr-agi"
ARI_UNIT = "speaqr-ari.service"
FASTAGI_UNIT = "speaqr-fastagi.service"
# systemd holds the FastAGI port (socket activation): a connection starts the service again.
FASTAGI_SOCKET = "speaqr-fastagi.socket"
ASTERISK_LOG = "/var/log/asterisk/messages.log"
LOG_WAIT_S = 15.0

_ARI_GET = r"""
import base64, json, sys, tomllib, urllib.error, urllib.request
with open(sys.argv[1], "rb") as f:
    ari = tomllib.load(f)["ari"]
req = urllib.request.Request(ari["url"].rstrip("/") + "/ari" + sys.argv[2])
token = base64.b64encode(f"{ari['username']}:{ari['password']}".encode()).decode()
req.add_header("Authorization", "Basic " + token)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(json.dumps({"status": r.status, "body": json.load(r)}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": None}))
except OSError as e:
    print(json.dumps({"status": 0, "body": str(e)}))
"""


def as_root(host):
    """Commands as root (sudo unless the connection already is root)."""
    if host.user().name == "root":
        return contextlib.nullcontext()
    return host.sudo()


def templated(host, expr: str):
    """An inventory expression as Ansible templates it for this host (None when undefined)."""
    res = host.ansible("debug", f"var={expr}", check=False)
    value = res.get(expr)
    if isinstance(value, str) and value.startswith("VARIABLE IS NOT DEFINED"):
        return None
    return value


@dataclass
class LoopbackSetup:
    """Who exercises what on this target, from its inventory."""

    passthrough_user: str | None
    speaqr_user: str | None  # a user whose calls go through the lab's stand-in Speaqr
    shift_hz: float
    disabled: dict[str, str] = field(default_factory=dict)  # username -> password
    agi_mode: str = "fastagi"
    config_dir: str = "/etc/speaqr-sip"
    echo_extension: str | None = None
    database: str = "speaqr"
    raw: dict = field(default_factory=dict)


def load_setup(host) -> LoopbackSetup:
    names = [
        "speaqr_users",
        "speaqr_ari_processor",
        "speaqr_ari_speaqr_api_key|length>0",
        "speaqr_ari_fake_speaqr_enabled",
        "speaqr_ari_fake_speaqr_shift_hz",
        "speaqr_ari_speaqr_url",
        "speaqr_ari_fake_speaqr_port",
        "speaqr_ari_agi_mode",
        "speaqr_ari_config_dir",
        "speaqr_asterisk_echo_extension_enabled",
        "speaqr_asterisk_echo_extension",
        "speaqr_mariadb_database",
    ]
    expr = "[" + ",".join(f"({n})|default(None)" for n in names) + "]"
    values = templated(host, expr)
    if not isinstance(values, list) or len(values) != len(names):
        pytest.fail(f"could not read the inventory of the host under test: {values!r}")
    v = dict(zip(names, values, strict=True))
    if not v["speaqr_ari_processor"]:
        pytest.skip("speaqr_ari is not in this host's inventory")
    has_key = bool(v["speaqr_ari_speaqr_api_key|length>0"])
    default = v["speaqr_ari_processor"]
    if default == "auto":
        default = "speaqr" if has_key else "passthrough"
    stand_in = bool(v["speaqr_ari_fake_speaqr_enabled"]) and str(v["speaqr_ari_speaqr_url"] or "").startswith(
        ("http://127.0.0.1:", "http://localhost:")
    )
    passthrough = speaqr = None
    disabled: dict[str, str] = {}
    for u in v["speaqr_users"] or []:
        if u.get("state", "present") == "absent":
            continue
        if not u.get("enabled", True):
            disabled[u["username"]] = u["password"]
            continue
        kind = u.get("processor", "default")
        kind = default if kind == "default" else kind
        if kind == "speaqr" and not has_key:
            kind = "passthrough"  # [processor] fallback passthrough (the lab's); hangup would refuse
        if kind == "passthrough" and passthrough is None:
            passthrough = u["username"]
        if kind == "speaqr" and speaqr is None and stand_in:
            speaqr = u["username"]
    return LoopbackSetup(
        passthrough_user=passthrough,
        speaqr_user=speaqr,
        shift_hz=float(v["speaqr_ari_fake_speaqr_shift_hz"] or 300),
        disabled=disabled,
        agi_mode=v["speaqr_ari_agi_mode"] or "fastagi",
        config_dir=v["speaqr_ari_config_dir"] or "/etc/speaqr-sip",
        echo_extension=v["speaqr_asterisk_echo_extension"] if v["speaqr_asterisk_echo_extension_enabled"] else None,
        database=v["speaqr_mariadb_database"] or "speaqr",
        raw=v,
    )


# --- logs ------------------------------------------------------------------------------------


def log_lines(host, needle: str, *, wait_s: float = LOG_WAIT_S, also: str = "") -> list[str]:
    """Lines of the AGI check, the ARI application and Asterisk's messages.log holding ``needle``
    (and ``also``, when given); waits up to ``wait_s`` for at least one (journald may lag)."""
    q = shlex.quote(needle)
    cmd = (
        f"{{ journalctl --no-pager -o cat -t {AGI_IDENT} --since -30min; "
        f"journalctl --no-pager -o cat -u {ARI_UNIT} --since -30min; "
        f"cat {ASTERISK_LOG} 2>/dev/null; }} | grep -F -e {q} || true"
    )
    deadline = time.monotonic() + wait_s
    while True:
        with as_root(host):
            out = host.run(cmd).stdout
        lines = [line for line in out.splitlines() if needle in line and (not also or also in line)]
        if lines or time.monotonic() >= deadline:
            return lines
        time.sleep(1.0)


# --- ARI and services ------------------------------------------------------------------------


def ari_get(host, setup: LoopbackSetup, path: str) -> dict:
    """``GET /ari<path>`` on the target itself (ARI listens on its loopback), with the
    application's own credentials read there from ari.toml (nothing secret on a command line)."""
    cmd = (
        "python3 -c "
        + shlex.quote(_ARI_GET)
        + " "
        + shlex.quote(f"{setup.config_dir}/ari.toml")
        + " "
        + shlex.quote(path)
    )
    with as_root(host):
        out = host.check_output(cmd)
    return json.loads(out)


def leftovers(host, setup: LoopbackSetup, wait_s: float = 15.0) -> dict:
    """Channels and bridges ARI still lists, after waiting up to ``wait_s`` for them to go."""
    deadline = time.monotonic() + wait_s
    while True:
        channels = ari_get(host, setup, "/channels")
        bridges = ari_get(host, setup, "/bridges")
        assert channels["status"] == 200 and bridges["status"] == 200, (channels, bridges)
        found = {
            "channels": [c.get("name") for c in channels["body"]],
            "bridges": [b.get("id") for b in bridges["body"]],
        }
        if not (found["channels"] or found["bridges"]) or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def systemctl(host, verb: str, unit: str) -> None:
    with as_root(host):
        host.check_output(f"systemctl {verb} {shlex.quote(unit)}")


def wait_for_ari_app(host, setup: LoopbackSetup, app: str = "loopback", timeout_s: float = 60.0) -> float:
    """Seconds until the ARI application is registered with Asterisk again."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if ari_get(host, setup, f"/applications/{app}")["status"] == 200:
            return time.monotonic() - t0
        time.sleep(0.25)
    with as_root(host):
        journal = host.run(f"journalctl -u {ARI_UNIT} -n 40 --no-pager").stdout
    pytest.fail(f"ARI application {app} not registered {timeout_s} s after start:\n{journal}")


def wait_until_unregistered(host, user: str, timeout_s: float = 20.0) -> None:
    """Until ``user``'s AOR has no contact (clients unregister when they exit)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with as_root(host):
            shown = host.check_output(f"asterisk -rx {shlex.quote(f'pjsip show aor {user}')}")
        if f"Contact:  {user}/" not in shown and f"Contact: {user}/" not in shown:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"{user} still has a registered contact after {timeout_s} s:\n{shown}")
        time.sleep(1.0)


def refused_in(result: dict) -> float | None:
    """Milliseconds from the INVITE that carried credentials to the end of the refused call."""
    sent = result.get("invites_sent_at_ms") or []
    end = result.get("disconnected_at_ms")
    if not sent or end is None:
        return None
    return round(end - sent[-1], 1)


def call(sip: SipClient, user: str, to: str, headers: dict | None, *extra: str, password: str | None = None) -> dict:
    return sip.call(user, to, *extra, headers=headers, password=password)
