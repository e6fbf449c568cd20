"""Early media: what a carrier plays before it answers or refuses (a 183 with SDP, e.g. "the
number you have dialled is not in service") reaches the caller, through the caller's processor
session, and the refusal after it still reaches the caller with its own status.

The stand-in carrier's rule 0183 (``tests.sip.call_harness.CARRIER_RULES``) answers 183 with
SDP, plays its 600 Hz tone as early media for 3 s, then refuses with 404. Judged by analysis of
the caller's recording: the tone (shifted by the stand-in Speaqr for a user on the speaqr
processor), heard before any answer. The caller's own audio does not go out before the answer:
the carrier hears silence.
"""

from __future__ import annotations

import pytest

from tests.audio import RATE, active_segment, band_energy_ratio, dominant_frequency, is_silent, read_wav
from tests.sip.call_harness import CARRIER_TONE_HZ

# The carrier's announcement lasts 3 s; what reaches the caller must be most of it.
MIN_ANNOUNCEMENT_S = 2.0


def _heard(path: str):
    x, rate = read_wav(path)
    assert rate == RATE
    return x


@pytest.mark.parametrize("kind", ["passthrough", "speaqr"])
def test_the_carriers_announcement_before_a_refusal_reaches_the_caller(
    kind, request, caller, carrier, call_settings, caller_tone, target, tmp_path
):
    user = request.getfixturevalue(f"{kind}_user")
    heard_hz = CARRIER_TONE_HZ + (call_settings.fake_speaqr_shift_hz if kind == "speaqr" else 0.0)
    destination = call_settings.allowed_number("0183")
    mark = carrier.mark()
    rec = tmp_path / f"{user}-early.wav"
    # Held well past the announcement: the carrier's 404 must end the call, not the caller.
    r = caller.dial(user, destination, "--play", str(caller_tone), "--record", str(rec), "--duration", "10")

    assert r.get("status") == 404 and not r["connected"], r
    assert r["early_media"], f"no media before the refusal: {r}"
    c = carrier.call_for(destination, mark)
    assert c["early_media_ms"] is not None and c["final_status"] == 404, c

    at_caller = _heard(str(rec))
    assert not is_silent(at_caller), "the caller heard nothing of the announcement"
    active = active_segment(at_caller, RATE)
    info = {
        "dominant_hz": round(dominant_frequency(active, RATE), 1),
        "ratio": round(band_energy_ratio(active, RATE, heard_hz), 3),
        "seconds": round(len(active) / RATE, 2),
    }
    assert info["dominant_hz"] == pytest.approx(heard_hz, abs=15), info
    assert info["ratio"] > 0.6, info
    assert info["seconds"] >= MIN_ANNOUNCEMENT_S, info
    assert c["record"] and is_silent(_heard(c["record"])), "the caller's audio went out before any answer"

    rows = target.wait_call_records([r["call_id"]])
    (row,) = rows[r["call_id"]]
    assert (row["sip_status"], row["cause"], row["answered_at"]) == ("404", "not_found", None), row
