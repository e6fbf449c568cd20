"""Volume and size abuse from a client host of its own (198.51.100.12 on the lab's public
segment), each followed by a call that must be served: an oversized SIP message, a flood of
OPTIONS on one TLS connection, and idle TLS connections held while the call is placed.
tests/sip/abuse_client.py sends the traffic.

Needs the lab topology (SPEAQR_TARGET_NETNS and its -client<k> namespaces); skipped elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.sip.harness import ROOT

ABUSER = 2
OPTIONS_FLOOD = 500
IDLE_CONNECTIONS = 150
# Under the per-source limit on new connections (burst 100, then 10/s) 150 open in ~5 s.
IDLE_OPEN_TIMEOUT_S = 90
# Unauthenticated OPTIONS are challenged (401) like every request from an unknown source.
CHALLENGE = 401


@pytest.fixture(scope="module")
def abuser(sip_target) -> list[str]:
    outside = sip_target.from_lab_host(sip_target.lab_host(f"client{ABUSER}"))
    cmd = ["ip", "netns", "exec", outside.netns, sys.executable, "-m", "tests.sip.abuse_client"]
    return cmd, ["--server", outside.address, "--domain", outside.domain, "--ca", outside.ca]


def run(abuser, kind: str, *args: str, timeout: float = 120) -> dict:
    cmd, target = abuser
    p = subprocess.run([*cmd, kind, *target, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def served(sip, user: str) -> None:
    r = sip.call(user, "loopback", "--duration", "1")
    assert r.get("status") == 200 and r.get("connected"), f"no call served right after the abuse: {r}"


def test_a_64_kb_sip_message_gets_an_answer_and_the_next_call_is_served(sip, sip_user, abuser):
    r = run(abuser, "big", "--size", "65536")
    assert r["sent"] == r["size"] >= 65000, r
    assert r["statuses"] == [CHALLENGE], r
    served(sip, sip_user)


def test_an_options_flood_is_answered_in_full_and_the_next_call_is_served(sip, sip_user, abuser):
    r = run(abuser, "options", "--count", str(OPTIONS_FLOOD))
    assert r["answered"] == OPTIONS_FLOOD and r["statuses"] == {str(CHALLENGE): OPTIONS_FLOOD}, r
    served(sip, sip_user)


def test_a_call_is_served_while_a_host_holds_many_idle_tls_connections(sip, sip_user, abuser, tmp_path):
    cmd, target = abuser
    ready = tmp_path / "idle.ready"
    idle = subprocess.Popen(
        [*cmd, "idle", *target, "--count", str(IDLE_CONNECTIONS), "--hold", "15", "--ready-file", str(ready)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + IDLE_OPEN_TIMEOUT_S
        while not ready.exists() and idle.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), f"the idle connections never opened: {idle.stderr.read() if idle.poll() else ''}"
        opened = json.loads(ready.read_text())["opened"]
        assert opened == IDLE_CONNECTIONS, f"only {opened}/{IDLE_CONNECTIONS} TLS connections opened"
        served(sip, sip_user)
    finally:
        out, _err = idle.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["opened"] == IDLE_CONNECTIONS, result
