"""Faults during the ``call`` service: the ARI application dies while calls are up, and the
carrier goes away and comes back.

- ARI application SIGKILLed during two live calls: systemd restarts it, it ends what the dead
  run left: both callers get a BYE and both carrier legs are hung up (never a carrier leg left
  billing with nobody on it) within HANGUP_BOUND_S; nothing stays; both records are closed with
  cause ``app_restart``; the next call is served.
- Carrier stopped: Asterisk's OPTIONS qualify marks the trunk offline (within the qualify
  interval and timeout) and a call is refused 503 at once instead of ringing into the answer
  timeout; carrier started again: the trunk is online within the interval and calls go through,
  without an operator.

These tests kill the appliance's services and the stand-in carrier: they restore both.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest

from tests.sip.call_harness import NOTHING_LEFT
from tests.sip.loopback import ARI_UNIT, as_root, load_setup, refused_in, wait_for_ari_app

CALLS = 2
HANGUP_BOUND_S = 20.0
HOLD_BEFORE_KILL_S = 3.0
# A refusal for an offline trunk: no ringing, no answer timeout.
OFFLINE_REFUSAL_S = 2.0


def _trunk_timing(call_settings) -> float:
    """How long Asterisk may take to notice a change: one qualify interval, its timeout (3 s)
    and a margin."""
    return float(call_settings.trunk.get("qualify_frequency") or 0) + 3.0 + 5.0


def test_killing_the_ari_application_during_two_calls_hangs_up_callers_and_carrier_legs(
    host, caller, carrier, passthrough_user, call_settings, target, tmp_path, sip_metrics
):
    mark = carrier.mark()
    numbers = [call_settings.allowed_number(f"06{i:02d}") for i in range(CALLS)]
    held = []
    try:
        for n in numbers:
            h = caller.hold(passthrough_user, n, tmp_path)
            held.append(h)
            assert h.state["connected"] == [True], f"call to {n} did not connect: {h.state}"
        call_ids = [h.state["call_ids"][0] for h in held]
        carrier.wait(
            lambda calls: sum(c["answered_ms"] is not None and not c["ended"] for c in calls) == CALLS, mark=mark
        )
        time.sleep(HOLD_BEFORE_KILL_S)
        open_rows = target.wait_call_records(call_ids)
        assert all(r[-1]["cause"] == "in_progress" for r in open_rows.values()), open_rows

        with as_root(host):
            host.check_output(f"systemctl kill -s KILL {ARI_UNIT}")
        killed_at = time.monotonic()
        for h in held:
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.proc.wait(timeout=max(0.1, HANGUP_BOUND_S - (time.monotonic() - killed_at)))
        ended_after = time.monotonic() - killed_at
    finally:
        results = [h.stop() for h in held]
    for r in results:
        assert r.get("stopped_by") == "all calls ended" and r["ended_by"] == "remote", (
            f"a caller was not hung up by the appliance within {HANGUP_BOUND_S} s of the kill: {r}"
        )
    legs = carrier.wait(lambda calls: sum(c["ended"] for c in calls) >= CALLS, timeout=HANGUP_BOUND_S, mark=mark)
    for leg in legs:
        assert leg["answered_ms"] is not None and leg["hung_up_by"] == "remote", (
            f"a carrier leg was not hung up by the appliance: {leg}"
        )

    left = target.wait_clean()
    assert left == NOTHING_LEFT, left
    rows = target.wait_call_records(call_ids)
    assert sorted(rows) == sorted(call_ids) and all(len(r) == 1 for r in rows.values()), rows
    for cid, r in rows.items():
        assert (r[0]["cause"], r[0]["sip_status"]) == ("app_restart", "200"), f"{cid}: {r}"

    wait_for_ari_app(host, load_setup(host))
    after = caller.dial(passthrough_user, call_settings.allowed_number("0699"), "--duration", "1")
    assert after.get("status") == 200, f"no call served after the fault: {after}"
    sip_metrics.append(
        {"test": "ARI application SIGKILL during 2 call-service calls", "hung_up_after_s": round(ended_after, 2)}
    )


def test_a_stopped_carrier_is_refused_503_at_once_and_used_again_once_back(
    caller, carrier, passthrough_user, call_settings, target, sip_metrics
):
    if not call_settings.trunk_qualified:
        pytest.skip("the trunk is not qualified in this inventory (qualify_frequency 0)")
    trunk = call_settings.trunk["name"]
    bound = _trunk_timing(call_settings)
    assert target.trunk_state(trunk) == "online"
    try:
        carrier.stop()
        offline_after = target.wait_trunk(trunk, "offline", timeout=bound)
        refused = caller.dial(passthrough_user, call_settings.allowed_number("0701"), "--duration", "1")
        assert refused.get("status") == 503, f"a call to the offline carrier was not refused 503: {refused}"
        refused_ms = refused_in(refused)
        assert refused_ms is not None and refused_ms < OFFLINE_REFUSAL_S * 1000, f"not refused at once: {refused}"
        rows = target.wait_call_records([refused["call_id"]])[refused["call_id"]]
        assert [(r["sip_status"], r["cause"]) for r in rows] == [("503", "unavailable")], rows
    finally:
        carrier.start()
    online_after = target.wait_trunk(trunk, "online", timeout=bound)
    target.settle_trunk(trunk)
    mark = carrier.mark()
    number = call_settings.allowed_number("0702")
    served = caller.dial(passthrough_user, number, "--duration", "1")
    assert served.get("status") == 200, f"the carrier was not used again once back: {served}"
    assert carrier.call_for(number, mark)["answered_ms"] is not None
    sip_metrics.append(
        {
            "test": "carrier stopped, then started",
            "offline_after_s": round(offline_after, 2),
            "refused_in_ms": refused_ms,
            "online_after_s": round(online_after, 2),
        }
    )
