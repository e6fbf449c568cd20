"""Call service teardown and limits: either side hanging up ends both legs, the per-user limit of
live outbound calls refuses one more, and nothing is left behind on the appliance.
"""

from __future__ import annotations

import pytest

# A hangup on one leg must reach the other leg within this (ms, same host clock).
HANGUP_PROPAGATION_MS = 2000


def test_callee_hangup_ends_the_caller_leg(caller, carrier, passthrough_user, call_settings, target):
    destination = call_settings.allowed_number("0555")  # the carrier answers, then hangs up after 2 s
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "10")
    assert r.get("status") == 200, r
    c = carrier.call_for(destination, mark)
    assert c["hung_up_by"] == "carrier", c
    assert r["ended_by"] == "remote", f"the caller leg was not ended by the appliance: {r}"
    assert r["duration_s"] < 6, r
    lag = r["disconnected_at_ms"] - c["disconnected_ms"]
    assert 0 <= lag < HANGUP_PROPAGATION_MS, f"caller leg ended {lag:.0f} ms after the callee hung up"
    rows = target.wait_call_records([r["call_id"]])
    assert [row["cause"] for row in rows[r["call_id"]]] == ["normal"], rows


def test_caller_hangup_ends_the_carrier_leg(caller, carrier, passthrough_user, call_settings, target):
    destination = call_settings.allowed_number("0301")
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "2")
    assert r.get("status") == 200 and r["ended_by"] == "local", r
    c = carrier.call_for(destination, mark)
    assert c["hung_up_by"] == "remote", c
    lag = c["disconnected_ms"] - r["disconnected_at_ms"]
    assert 0 <= lag < HANGUP_PROPAGATION_MS, f"carrier leg ended {lag:.0f} ms after the caller hung up"
    left = target.wait_clean()
    assert not left["channels"] and not left["bridges"], left


def test_over_the_per_user_limit_is_refused(caller, carrier, passthrough_user, call_settings, target, tmp_path):
    limit = call_settings.max_calls_per_user
    if limit < 1 or limit > 3:
        pytest.skip(f"max_calls_per_user {limit}: this test holds that many calls at the 4-call stand-in carrier")
    held = []
    try:
        for i in range(limit):
            h = caller.hold(passthrough_user, call_settings.allowed_number(f"04{i:02d}"), tmp_path)
            held.append(h)
            assert h.state["connected"] == [True], f"held call {i} did not connect: {h.state}"
        extra = call_settings.allowed_number("0499")
        mark = carrier.mark()
        r = caller.dial(passthrough_user, extra, "--duration", "0.5")
        assert r.get("status") == 403, f"call {limit + 1} of {passthrough_user} was not refused: {r}"
        assert carrier.calls_since(mark) == [], "the call over the limit reached the carrier"
        rows = target.wait_call_records([r["call_id"]])
        assert [(row["sip_status"], row["cause"]) for row in rows[r["call_id"]]] == [("403", "policy")], rows
    finally:
        results = [h.stop() for h in held]
    for res in results:
        # Still up, with audio arriving (a software-emulated VM relays below the nominal 50 packets/s).
        at_stop = res["at_stop"]
        assert at_stop["connected"] and (at_stop["rx_packets_last_second"] or 0) > 0, f"a held call dropped: {res}"
    # The slots are free again: the next call goes through.
    again = call_settings.allowed_number("0498")
    r = caller.dial(passthrough_user, again, "--duration", "0.5")
    assert r.get("status") == 200, f"the limit was not released after the held calls ended: {r}"
