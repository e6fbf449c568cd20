"""Call service outcomes: what the caller gets for each kind of callee and of destination, what
the carrier is asked for, and the call record each attempt leaves (its cause).

The stand-in carrier picks its behaviour by the dialled number's last digits
(``tests.sip.call_harness.CARRIER_RULES``): 0486 busy, 0480 never answers, 0403/0404 reject.
"""

from __future__ import annotations

import pytest

from tests.sip.call_fixtures import post_dial_delay_ms


def _record(target, r: dict) -> dict:
    rows = target.wait_call_records([r["call_id"]])
    got = rows.get(r["call_id"], [])
    assert len(got) == 1, f"want exactly one call record for {r['call_id']}, got {got}"
    return got[0]


def test_x_dial_overrides_the_dialled_number(caller, carrier, passthrough_user, call_settings, target):
    destination = call_settings.allowed_number("0201")
    dialled = call_settings.allowed_number("0202")
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5", dial=dialled)
    assert r.get("status") == 200, r
    c = carrier.call_for(dialled, mark)
    assert [x["number"] for x in carrier.calls_since(mark)] == [dialled], "the carrier was asked for X-Destination"
    assert post_dial_delay_ms(r, c) is not None
    row = _record(target, r)
    assert (row["destination"], row["dialled_number"]) == (destination, dialled), row
    assert row["cause"] == "normal", row


@pytest.mark.parametrize(
    ("suffix", "status", "cause"),
    [("0486", 486, "busy"), ("0403", 403, "rejected"), ("0404", 404, "not_found")],
    ids=["busy-486", "rejected-403", "not-found-404"],
)
def test_callee_refusal_reaches_the_caller(
    caller, carrier, passthrough_user, call_settings, target, suffix, status, cause, served_after
):
    destination = call_settings.allowed_number(suffix)
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5")
    assert r.get("status") == status, r
    assert not r["connected"], r
    c = carrier.call_for(destination, mark)
    assert c["hung_up_by"] == "carrier", c
    # "right away": the refusal is not held back (well under a second on an idle host).
    assert r["disconnected_at_ms"] - r["invites_sent_at_ms"][-1] < 3000, r
    row = _record(target, r)
    assert (row["sip_status"], row["cause"], row["answered_at"]) == (str(status), cause, None), row
    served_after()


def test_no_answer_gives_480_within_the_answer_timeout(
    caller, carrier, passthrough_user, call_settings, target, served_after
):
    destination = call_settings.allowed_number("0480")
    timeout = call_settings.answer_timeout
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5")
    assert r.get("status") == 480, r
    waited_s = (r["disconnected_at_ms"] - r["invites_sent_at_ms"][-1]) / 1000.0
    assert timeout - 0.5 <= waited_s <= timeout + 3.0, f"480 after {waited_s:.2f} s, answer timeout {timeout} s"
    c = carrier.call_for(destination, mark)
    assert c["hung_up_by"] == "remote" and c["final_status"] == 487, f"the carrier leg was not cancelled: {c}"
    row = _record(target, r)
    assert (row["sip_status"], row["cause"]) == ("480", "no_answer"), row
    served_after()


@pytest.mark.parametrize(
    ("destination", "dial"),
    [("34911234567", None), ("+3491", None), ("+34911234567890123", None), ("+34abc123456", None), (None, "12345")],
    ids=["no-plus", "too-short", "too-long", "letters", "bad-x-dial"],
)
def test_malformed_number_gives_484(
    caller, carrier, passthrough_user, call_settings, target, destination, dial, served_after
):
    destination = destination or call_settings.allowed_number()
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5", dial=dial)
    assert r.get("status") == 484, r
    row = _record(target, r)
    assert row["sip_status"] == "484", row
    assert row["cause"] in ("invalid_number", "malformed_number"), row
    assert carrier.calls_since(mark) == [], "a malformed number reached the carrier"
    served_after()


def _not_allowed(call_settings) -> str:
    for prefix in ("+81", "+61", "+49", "+33", "+7"):
        if not any(prefix.startswith(p) or p.startswith(prefix) for p in call_settings.allowed_prefixes):
            return prefix
    pytest.skip("every candidate prefix is allowed by this inventory")


def _blocked(call_settings) -> str:
    for prefix in call_settings.blocked_prefixes:
        if any(prefix.startswith(p) for p in call_settings.allowed_prefixes):
            return prefix
    pytest.skip("no blocked prefix inside an allowed one in this inventory")


@pytest.mark.parametrize("kind", ["not-allowed", "blocked", "not-allowed-x-dial"])
def test_destination_outside_the_policy_gives_403(
    caller, carrier, passthrough_user, call_settings, target, kind, served_after
):
    from tests.sip.call_harness import number

    allowed = call_settings.allowed_number()
    if kind == "not-allowed":
        destination, dial = number(_not_allowed(call_settings)), None
    elif kind == "blocked":
        destination, dial = number(_blocked(call_settings)), None
    else:
        destination, dial = allowed, number(_not_allowed(call_settings))
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5", dial=dial)
    assert r.get("status") == 403, r
    row = _record(target, r)
    assert (row["sip_status"], row["cause"]) in {("403", "policy"), ("403", "destination_not_allowed")}, row
    assert carrier.calls_since(mark) == [], "a forbidden destination reached the carrier"
    served_after()
