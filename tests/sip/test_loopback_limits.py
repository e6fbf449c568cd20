"""The loopback service's abuse limits with real clients: past the per-user limit and past the
total limit a loopback call is refused 403 with a log line carrying its Call-ID, the calls in
progress keep their audio, and once they end the next call is served. The limits come from the
host's inventory (speaqr_ari_loopback_max_calls_per_user / _total). A call that lasts past
speaqr_ari_loopback_max_call_duration is hung up (record cause max_duration)."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from tests.sip.call_harness import Target
from tests.sip.harness import _templated, stop_all
from tests.sip.loopback import leftovers, log_lines

# Holding more than this many calls from the test host is not a test of the limit any more.
MAX_HELD = 24
# A maximum duration longer than this is not waited for (the lab's nspawn target sets 60 s).
MAX_WAITED_DURATION_S = 120.0
DURATION_SLACK_S = 5.0


@pytest.fixture(scope="module")
def limits(host) -> dict[str, int]:
    per_user = _templated(host, "speaqr_ari_loopback_max_calls_per_user")
    total = _templated(host, "speaqr_ari_loopback_max_calls_total")
    if per_user is None or total is None:
        pytest.skip("the loopback limits are not in this host's inventory")
    return {"per_user": int(per_user), "total": int(total)}


def refused_by_policy(sip, host, user: str, reason: str) -> None:
    r = sip.call(user, "loopback", "--duration", "1")
    assert r.get("status") == 403 and not r.get("connected"), f"{user}'s call past the {reason} got {r}"
    lines = log_lines(host, r["call_id"], also=reason)
    assert lines, f"no log line with call_id {r['call_id']} and {reason}"


def test_a_call_past_the_per_user_limit_is_refused_403_and_the_held_calls_go_on(host, sip, setup, limits, tmp_path):
    user = setup.passthrough_user
    if user is None or not 1 <= limits["per_user"] <= MAX_HELD:
        pytest.skip(f"per-user limit {limits['per_user']} not testable here")
    held = sip.hold_many(user, limits["per_user"], workdir=tmp_path)
    try:
        for h in held:
            assert all(h.state["connected"]), f"calls within the limit were not connected: {h.state}"
        refused_by_policy(sip, host, user, "user_limit")
    finally:
        results = stop_all(held)
    at_stop = [a for r in results for a in (r["at_stop"] if isinstance(r["at_stop"], list) else [r["at_stop"]])]
    # Still up, with audio arriving (a software-emulated VM relays below the nominal 50 packets/s).
    assert all(a["connected"] and (a["rx_packets_last_second"] or 0) > 0 for a in at_stop), (
        f"held calls lost their audio: {at_stop}"
    )
    assert leftovers(host, setup) == {"channels": [], "bridges": []}
    after = sip.call(user, "loopback", "--duration", "0.5")
    assert after.get("status") == 200, f"no call served once the held calls ended: {after}"


def test_a_call_past_the_total_limit_is_refused_403(host, sip, sip_target, setup, limits, tmp_path):
    users = [u for u in sip_target.users if u not in setup.disabled]
    if not 1 <= limits["total"] <= MAX_HELD or len(users) < 2:
        pytest.skip(f"total limit {limits['total']} not testable here with {len(users)} users")
    plan, left = [], limits["total"]
    for user in users:
        n = min(left, limits["per_user"])
        if n:
            plan.append((user, n))
            left -= n
    if left:
        pytest.skip("the users' per-user limits cannot fill the total limit")
    spare = next((u for u, n in plan if n < limits["per_user"]), None) or next(
        (u for u in users if u not in dict(plan)), None
    )
    if spare is None:
        pytest.skip("every user is at its own limit: a refusal would not tell the total limit apart")
    held = []
    try:
        for user, n in plan:
            calls = sip.hold_many(user, n, workdir=tmp_path)
            held.extend(calls)
            for call in calls:
                assert all(call.state["connected"]), f"{user}'s calls within the limits were not connected"
        refused_by_policy(sip, host, spare, "total_limit")
    finally:
        stop_all(held)
    after = sip.call(spare, "loopback", "--duration", "0.5")
    assert after.get("status") == 200, f"no call served once the held calls ended: {after}"


def test_a_loopback_call_past_its_maximum_duration_is_hung_up(host, sip, setup, tmp_path):
    user = setup.passthrough_user
    limit = _templated(host, "speaqr_ari_loopback_max_call_duration")
    if user is None or limit is None or not 0 < float(limit) <= MAX_WAITED_DURATION_S:
        pytest.skip(f"maximum loopback duration {limit} s: longer than this suite waits")
    limit = float(limit)
    held = sip.hold(user, "loopback", workdir=tmp_path)
    try:
        assert all(held.state["connected"]), held.state
        with contextlib.suppress(subprocess.TimeoutExpired):
            held.proc.wait(timeout=limit + DURATION_SLACK_S)
    finally:
        result = held.stop()
    assert result.get("stopped_by") == "all calls ended" and result["ended_by"] == "remote", (
        f"the call was not hung up by the appliance within {limit + DURATION_SLACK_S} s: {result}"
    )
    assert limit - DURATION_SLACK_S <= result["duration_s"] <= limit + DURATION_SLACK_S, result
    rows = Target(host).wait_call_records([result["call_id"]])[result["call_id"]]
    assert [(r["cause"], r["sip_status"]) for r in rows] == [("max_duration", "200")], rows
    after = sip.call(user, "loopback", "--duration", "0.5")
    assert after.get("status") == 200, f"no call served after the hung-up call: {after}"
