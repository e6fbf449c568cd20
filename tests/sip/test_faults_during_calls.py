"""Faults *during* live loopback calls: the ARI application is SIGKILLed while four calls are up.

systemd restarts it; on start-up it finds the channels and bridges the dead process left behind
and ends them, so every caller gets a BYE within HANGUP_BOUND_S of the kill (never silence), no
channel, bridge, relay socket or processor session stays, every call's record exists (written
open at admission) and is closed with cause ``app_restart``, and the next call is served.

These tests kill the appliance's services: they restore them whatever happens.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from tests.sip.call_harness import Target
from tests.sip.loopback import ARI_UNIT, LoopbackSetup, as_root, load_setup, wait_for_ari_app

CALLS = 4
# systemd restarts the application after 1 s; it connects, lists what is left, waits 2 s for
# StasisStart races and hangs the leftovers up: ~5 s here, 15 s under software emulation.
HANGUP_BOUND_S = 20.0
HOLD_BEFORE_KILL_S = 3.0


@pytest.fixture(scope="module")
def setup(host) -> LoopbackSetup:
    return load_setup(host)


@pytest.fixture(scope="module")
def alice(setup) -> str:
    if setup.passthrough_user is None:
        pytest.skip("no enabled user on the passthrough processor in this inventory")
    return setup.passthrough_user


def test_killing_the_ari_application_during_four_calls_hangs_them_up_and_closes_their_records(
    host, sip, setup, alice, tmp_path, sip_metrics
):
    target = Target(host)
    held = sip.hold(alice, "loopback", "--concurrent", str(CALLS), workdir=tmp_path)
    call_ids = held.state["call_ids"]
    assert all(held.state["connected"]), f"not every call connected before the fault: {held.state}"
    time.sleep(HOLD_BEFORE_KILL_S)
    open_rows = target.wait_call_records(call_ids)
    assert sorted(open_rows) == sorted(call_ids), f"no record written at admission for some calls: {open_rows}"
    assert all(rows[-1]["cause"] == "in_progress" for rows in open_rows.values()), open_rows

    with as_root(host):
        host.check_output(f"systemctl kill -s KILL {ARI_UNIT}")
    killed_at = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):  # the asserts below say what the calls did
        held.proc.wait(timeout=HANGUP_BOUND_S)
    ended_after = time.monotonic() - killed_at
    result = held.stop()
    assert result.get("stopped_by") == "all calls ended", (
        f"the callers were not hung up within {HANGUP_BOUND_S} s of the kill: {result}"
    )
    for call in result["calls"]:
        assert call["status"] == 200 and call["ended_by"] == "remote", f"not hung up by the appliance: {call}"

    left = target.wait_clean()
    assert left == {"channels": [], "bridges": [], "relay_sockets": 0, "processor_connections": 0}, (
        f"left behind after the restart: {left}"
    )
    rows = target.wait_call_records(call_ids)
    closed = {cid: r[-1] for cid, r in rows.items()}
    assert sorted(closed) == sorted(call_ids), f"records missing after the crash: {rows}"
    assert all(len(r) == 1 for r in rows.values()), f"more than one record for a call: {rows}"
    for cid, row in closed.items():
        assert row["cause"] == "app_restart", f"{cid}: {row}"
        assert row["ended_at"] is not None and row["sip_status"] == "200", f"{cid}: {row}"

    wait_for_ari_app(host, setup)
    after = sip.call(alice, "loopback", "--duration", "1")
    assert after.get("status") == 200 and after.get("connected"), f"no call served after the fault: {after}"
    assert ended_after < HANGUP_BOUND_S
    sip_metrics.append(
        {"test": "ARI application SIGKILL during 4 loopback calls", "hung_up_after_s": round(ended_after, 2)}
    )
