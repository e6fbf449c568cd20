"""50 calls with mixed outcomes (answered, callee hangs up, busy, rejected, not found, no answer,
malformed, forbidden, X-Dial), two callers at a time (the passthrough user and, when the
inventory has one, the speaqr user): each gets its status and exactly one call record with the
right cause, and afterwards the appliance holds no channel, bridge, media relay or processor
session.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.sip.call_harness import NOTHING_LEFT, number


@dataclass
class Attempt:
    user: str
    destination: str
    status: int
    causes: tuple[str, ...]
    dial: str | None = None
    duration: str = "1"


def _plan(call_settings, users: list[str]) -> list[Attempt]:
    n = call_settings.allowed_number
    forbidden = number("+81")
    kinds = (
        [("answer", n("0601"), 200, ("normal",), None)] * 16
        + [("callee hangs up", n("0555"), 200, ("normal",), None)] * 4
        + [("busy", n("0486"), 486, ("busy",), None)] * 6
        + [("rejected", n("0403"), 403, ("rejected",), None)] * 4
        + [("not found", n("0404"), 404, ("not_found",), None)] * 3
        + [("no answer", n("0480"), 480, ("no_answer",), None)] * 2
        + [("malformed", "+3491", 484, ("invalid_number", "malformed_number"), None)] * 5
        + [("forbidden", forbidden, 403, ("policy", "destination_not_allowed"), None)] * 5
        + [("x-dial", n("0602"), 200, ("normal",), n("0603"))] * 5
    )
    assert len(kinds) == 50
    random.Random(4).shuffle(kinds)
    return [
        Attempt(users[i % len(users)], dest, status, causes, dial, "2.5" if kind == "callee hangs up" else "1")
        for i, (kind, dest, status, causes, dial) in enumerate(kinds)
    ]


def test_fifty_mixed_calls_leave_nothing_behind(
    caller, carrier, call_settings, target, passthrough_user, sip_target, sip_metrics
):
    if any(call_settings.allowed_number().startswith(p) for p in ("+81",)):
        pytest.skip("+81 is allowed here; the soak needs a forbidden prefix")
    users = [passthrough_user] + [
        u for u in sip_target.users if u != passthrough_user and call_settings.processor_of(u) == "speaqr"
    ][:1]
    plan = _plan(call_settings, users)
    since = time.time()
    mark = carrier.mark()

    def run(queue: list[Attempt]) -> list[tuple[Attempt, dict]]:
        out = []
        for a in queue:
            r = caller.dial(a.user, a.destination, "--duration", a.duration, dial=a.dial)
            out.append((a, r))
        return out

    queues = [[a for a in plan if a.user == u] for u in users]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(queues)) as pool:
        results = [pair for chunk in pool.map(run, queues) for pair in chunk]
    elapsed = time.monotonic() - t0

    wrong = [(a, r.get("status"), r.get("reason")) for a, r in results if r.get("status") != a.status]
    assert not wrong, f"{len(wrong)} of 50 calls got the wrong status: {wrong[:10]}"

    call_ids = [r["call_id"] for _, r in results]
    assert all(call_ids) and len(set(call_ids)) == 50, call_ids
    rows = target.wait_call_records(call_ids, timeout=30)
    bad = []
    for a, r in results:
        got = rows.get(r["call_id"], [])
        if len(got) != 1 or got[0]["cause"] not in a.causes or got[0]["sip_status"] != str(a.status):
            bad.append((a.destination, a.status, a.causes, got))
    assert not bad, f"{len(bad)} calls without exactly one right call record: {bad[:10]}"

    left = target.wait_clean(timeout=30)
    assert left == NOTHING_LEFT, f"left behind after 50 calls: {left}"
    journal = target.journal_since("speaqr-ari.service", since)
    assert "Traceback" not in journal, journal[-4000:]

    answered = [r for a, r in results if a.status == 200]
    carrier_calls = carrier.calls_since(mark)
    assert all(c["ended"] for c in carrier_calls), [c for c in carrier_calls if not c["ended"]]
    sip_metrics.append(
        {
            "test": "50 mixed calls",
            "elapsed_s": round(elapsed, 1),
            "answered": len(answered),
            "carrier_invites": len(carrier_calls),
            "invite_to_200_ms_median": sorted(r["invite_to_200_ms"] for r in answered)[len(answered) // 2],
        }
    )
