"""Faults *during* live loopback calls.

- ARI application SIGKILLed while four calls are up: systemd restarts it; on start-up it finds
  the channels and bridges the dead process left behind and ends them, so every caller gets a
  BYE within HANGUP_BOUND_S of the kill (never silence), nothing stays, every call's record
  exists (written open at admission) and is closed with cause ``app_restart``.
- Asterisk restarted during two calls: the callers get a BYE at once, the application
  reconnects (it is not restarted), closes both records with cause ``asterisk_hangup`` and keeps
  no relay socket or processor session.
- Asterisk SIGKILLed during two calls: no BYE can reach the callers (their dialogs died with the
  process); systemd restarts Asterisk, the application reconnects, closes both records
  (``asterisk_hangup``) and keeps no relay socket or processor session.
- MariaDB stopped during two calls: the calls go on with their audio, nothing crashes, and
  their records are written (closed, cause ``normal``) once MariaDB is back.
- A burst: up to 20 calls of one user (the inventory's per-user limit caps it) hung up within
  100 ms: nothing left, every record closed, the slots released.

Each is followed by a served call. These tests kill the appliance's services: they restore them
whatever happens.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from tests.sip.call_harness import NOTHING_LEFT, Target
from tests.sip.harness import calls_of, stop_all
from tests.sip.loopback import ARI_UNIT, as_root, templated, wait_for_ari_app

CALLS = 4
# systemd restarts the application after 1 s; it connects, lists what is left, waits 2 s for
# StasisStart races and hangs the leftovers up: ~5 s here, 15 s under software emulation.
HANGUP_BOUND_S = 20.0
HOLD_BEFORE_KILL_S = 3.0
# The burst: this many calls (at most the inventory's per-user loopback limit) hung up together.
BURST_CALLS = 20
BURST_WINDOW_MS = 100.0


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
    assert left == NOTHING_LEFT, f"left behind after the restart: {left}"
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


def _hold_calls(sip, target: Target, user: str, tmp_path, count: int):
    """``count`` connected calls, their Call-IDs and the ARI application's PID before the fault."""
    held = sip.hold(user, "loopback", "--concurrent", str(count), workdir=tmp_path)
    assert all(held.state["connected"]), f"not every call connected before the fault: {held.state}"
    return held, held.state["call_ids"], target.main_pid(ARI_UNIT)


def _assert_not_restarted(target: Target, pid_before: str, why: str) -> None:
    assert target.main_pid(ARI_UNIT) == pid_before, f"the ARI application restarted {why}"


def test_restarting_asterisk_during_two_calls_ends_them_and_closes_their_records(
    host, sip, setup, alice, tmp_path, sip_metrics
):
    target = Target(host)
    held, call_ids, pid_before = _hold_calls(sip, target, alice, tmp_path, 2)
    time.sleep(HOLD_BEFORE_KILL_S)
    restarted_at = time.monotonic()
    with as_root(host):
        host.check_output("systemctl restart asterisk.service")
    with contextlib.suppress(subprocess.TimeoutExpired):
        held.proc.wait(timeout=HANGUP_BOUND_S)
    ended_after = time.monotonic() - restarted_at
    result = held.stop()
    assert result.get("stopped_by") == "all calls ended", f"the callers were not hung up by the restart: {result}"
    for call in result["calls"]:
        assert call["status"] == 200 and call["ended_by"] == "remote", f"not hung up by the appliance: {call}"

    rows = target.wait_call_records(call_ids)
    closed = {cid: r[-1] for cid, r in rows.items()}
    assert sorted(closed) == sorted(call_ids) and all(len(r) == 1 for r in rows.values()), rows
    for cid, row in closed.items():
        assert (row["cause"], row["sip_status"]) == ("asterisk_hangup", "200") and row["ended_at"], f"{cid}: {row}"
    wait_for_ari_app(host, setup)
    left = target.wait_clean()
    assert left == NOTHING_LEFT, left
    _assert_not_restarted(target, pid_before, "instead of reconnecting")
    after = sip.call(alice, "loopback", "--duration", "1")
    assert after.get("status") == 200 and after.get("connected"), f"no call served after the restart: {after}"
    sip_metrics.append({"test": "Asterisk restarted during 2 loopback calls", "hung_up_after_s": round(ended_after, 2)})


def test_killing_asterisk_during_two_calls_closes_their_records_and_leaves_no_relay(
    host, sip, setup, alice, tmp_path, sip_metrics
):
    """Nobody can send the callers a BYE (the process holding their dialogs is gone); what must
    hold is the application's side: it reconnects to the restarted Asterisk, closes both records
    (``asterisk_hangup``) and keeps no relay socket or processor session."""
    target = Target(host)
    held, call_ids, pid_before = _hold_calls(sip, target, alice, tmp_path, 2)
    time.sleep(HOLD_BEFORE_KILL_S)
    try:
        with as_root(host):
            host.check_output("systemctl kill -s KILL asterisk.service")
        killed_at = time.monotonic()
        wait_for_ari_app(host, setup)
        back_after = time.monotonic() - killed_at
        rows = target.wait_call_records(call_ids)
        deadline = time.monotonic() + HANGUP_BOUND_S
        while any(r[-1]["ended_at"] is None for r in rows.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = target.wait_call_records(call_ids)
        closed_after = time.monotonic() - killed_at
        left = target.wait_clean()
    finally:
        result = held.stop()
        with as_root(host):
            host.run("systemctl start asterisk.service")  # whatever happened above
    assert sorted(rows) == sorted(call_ids) and all(len(r) == 1 for r in rows.values()), rows
    for cid, r in rows.items():
        assert (r[0]["cause"], r[0]["sip_status"]) == ("asterisk_hangup", "200") and r[0]["ended_at"], f"{cid}: {r}"
    assert left == NOTHING_LEFT, left
    _assert_not_restarted(target, pid_before, "instead of reconnecting")
    after = sip.call(alice, "loopback", "--duration", "1")
    assert after.get("status") == 200 and after.get("connected"), f"no call served after Asterisk came back: {after}"
    sip_metrics.append(
        {
            "test": "Asterisk SIGKILLed during 2 loopback calls",
            "asterisk_back_after_s": round(back_after, 2),
            "records_closed_after_s": round(closed_after, 2),
            "callers_rtp_at_stop": [a["rtp_flowing"] for a in result["at_stop"]],
        }
    )


def test_stopping_mariadb_during_two_calls_keeps_them_up_and_their_records_are_written_once_it_is_back(
    host, sip, setup, alice, tmp_path, sip_metrics
):
    target = Target(host)
    held, call_ids, pid_before = _hold_calls(sip, target, alice, tmp_path, 2)
    try:
        with as_root(host):
            host.check_output("systemctl stop mariadb.service")
        time.sleep(HOLD_BEFORE_KILL_S)
        result = held.stop()
    finally:
        with as_root(host):
            host.check_output("systemctl start mariadb.service")
    started_at = time.monotonic()
    for call in result["calls"]:
        assert call["status"] == 200 and call["ended_by"] == "local", (
            f"a call did not last while MariaDB was down: {call}"
        )
    for at_stop in result["at_stop"]:
        assert at_stop["connected"] and at_stop["rtp_flowing"], f"audio stopped while MariaDB was down: {result}"
    rows = target.wait_call_records(call_ids, timeout=60)
    written_after = time.monotonic() - started_at
    assert sorted(rows) == sorted(call_ids), f"records lost while MariaDB was down: {rows}"
    deadline = time.monotonic() + 60
    while any(r[-1]["cause"] != "normal" for r in rows.values()) and time.monotonic() < deadline:
        time.sleep(1)
        rows = target.wait_call_records(call_ids)
    for cid, r in rows.items():
        assert len(r) == 1 and (r[0]["cause"], r[0]["sip_status"]) == ("normal", "200"), f"{cid}: {r}"
        assert r[0]["ended_at"] is not None
    _assert_not_restarted(target, pid_before, "while MariaDB was down")
    after = sip.call(alice, "loopback", "--duration", "1")
    assert after.get("status") == 200 and after.get("connected"), f"no call served after MariaDB came back: {after}"
    sip_metrics.append(
        {"test": "MariaDB stopped during 2 loopback calls", "records_complete_after_restart_s": round(written_after, 2)}
    )


def test_twenty_calls_hung_up_within_100_ms_leave_nothing_behind_and_are_all_recorded(
    host, sip, setup, alice, tmp_path, sip_metrics
):
    target = Target(host)
    per_user = int(templated(host, "speaqr_ari_loopback_max_calls_per_user") or 0)
    count = min(BURST_CALLS, per_user)
    if count < 2:
        pytest.skip(f"the per-user loopback limit ({per_user}) holds no burst")
    held = sip.hold_many(alice, count, workdir=tmp_path)
    try:
        for h in held:
            assert all(h.state["connected"]), f"not every call connected: {h.state}"
        call_ids = [cid for h in held for cid in h.state["call_ids"]]
        time.sleep(2.0)
    finally:
        results = stop_all(held)
    calls = [c for r in results for c in calls_of(r)]
    assert len(calls) == count and all(c["status"] == 200 and c["ended_by"] == "local" for c in calls), calls
    ends = [c["disconnected_at_ms"] for c in calls]
    spread_ms = max(ends) - min(ends)
    assert spread_ms < BURST_WINDOW_MS, f"the hangups were spread over {spread_ms:.0f} ms, not one burst"

    left = target.wait_clean()
    assert left == NOTHING_LEFT, left
    rows = target.wait_call_records(call_ids, timeout=30)
    assert sorted(rows) == sorted(call_ids), f"records missing: {sorted(set(call_ids) - set(rows))}"
    for cid, r in rows.items():
        assert len(r) == 1 and (r[0]["cause"], r[0]["sip_status"]) == ("normal", "200") and r[0]["ended_at"], (
            f"{cid}: {r}"
        )
    after = sip.call(alice, "loopback", "--duration", "1")
    assert after.get("status") == 200, f"the slots were not released by the burst: {after}"
    sip_metrics.append({"test": f"{count} loopback calls hung up at once", "hangup_spread_ms": round(spread_ms, 1)})
