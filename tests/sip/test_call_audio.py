"""The call service end to end: a real TLS+SRTP caller dials ``call``, the appliance dials the
stand-in carrier over the trunk of the inventory, and audio crosses both legs.

Judged by analysis of what each side recorded: the carrier must hear the caller's 1 kHz tone and
the caller the carrier's 600 Hz tone (passthrough), or both shifted by the stand-in Speaqr
(speaqr processor) and NOT the raw tones.
"""

from __future__ import annotations

import pytest

from tests.audio import RATE, active_segment, band_energy_ratio, compare, dominant_frequency, is_silent, read_wav
from tests.sip.call_fixtures import post_dial_delay_ms
from tests.sip.call_harness import CARRIER_TONE_HZ, carrier_transport
from tests.sip.harness import TONE_HZ

# Share of the caller's sent tone found again in what the carrier recorded (quarter-second
# windows, see tests/sip/test_sip_clients.py), for the passthrough processor.
MATCH_PEAK = 0.9
MATCH_FRACTION = 0.8


def _audio(path: str):
    x, rate = read_wav(path)
    assert rate == RATE
    return x


def _tone_checks(x, freq_hz: float, not_freq_hz: float | None, who: str) -> dict:
    assert not is_silent(x), f"{who} heard nothing"
    active = active_segment(x, RATE)
    info = {
        "dominant_hz": round(dominant_frequency(active, RATE), 1),
        "ratio": round(band_energy_ratio(active, RATE, freq_hz), 3),
    }
    if not_freq_hz is not None:
        info["ratio_raw"] = round(band_energy_ratio(active, RATE, not_freq_hz), 3)
    assert info["dominant_hz"] == pytest.approx(freq_hz, abs=15), f"{who}: {info}"
    assert info["ratio"] > 0.6, f"{who}: {info}"
    if not_freq_hz is not None:
        assert info["ratio_raw"] < 0.1, f"{who} still hears the unprocessed {not_freq_hz:g} Hz: {info}"
    return info


def _media_checks(r: dict) -> None:
    assert r["codec"] == "PCMU/8000", r
    media = r["media"] or {}
    assert media.get("profile") == "RTP/SAVP", media
    assert media.get("crypto") == ["AES_CM_128_HMAC_SHA1_80"], media


def _trunk_checks(carrier, c: dict, call_settings) -> None:
    """The carrier got the call on the trunk's transport, with SDES keys exactly when srtp is on."""
    trunk = call_settings.trunk
    assert carrier.arrival_transport(c) == carrier_transport(trunk), c
    assert c["sdp_crypto"] == bool(trunk.get("srtp", True)), c


def _answered_call(caller, carrier, user, call_settings, caller_tone, tmp_path, tail_s: float = 2.0):
    destination = call_settings.allowed_number()
    mark = carrier.mark()
    rec = tmp_path / f"{user}-caller-received.wav"
    r = caller.dial(user, destination, "--play", str(caller_tone), "--record", str(rec), "--tail", str(tail_s))
    assert r.get("status") == 200, r
    assert r["connected"], r
    assert not r["early_media"], f"media before the answer, from a carrier that sent none: {r}"
    _media_checks(r)
    c = carrier.call_for(destination, mark)
    assert c["final_status"] == 200 and c["record"], c
    _trunk_checks(carrier, c, call_settings)
    return r, c, _audio(str(rec)), _audio(c["record"])


def test_passthrough_call_carries_both_tones(
    caller, carrier, passthrough_user, call_settings, caller_tone, target, tmp_path, sip_metrics, record_property
):
    r, c, at_caller, at_carrier = _answered_call(
        caller, carrier, passthrough_user, call_settings, caller_tone, tmp_path
    )
    to_carrier = _tone_checks(at_carrier, TONE_HZ, None, "the carrier")
    to_caller = _tone_checks(at_caller, CARRIER_TONE_HZ, None, "the caller")
    sent = _audio(str(caller_tone))
    cmp = compare(sent, at_carrier, RATE, max_lag_s=2.0, window_threshold=MATCH_PEAK)
    record_property("call_passthrough", {"to_carrier": to_carrier, "to_caller": to_caller, "compare": cmp})
    assert cmp["segments"]["matched_fraction"] >= MATCH_FRACTION, (
        f"the caller's tone did not reach the carrier intact: {cmp}"
    )
    pdd = post_dial_delay_ms(r, c)
    sip_metrics.append(
        {
            "test": "call passthrough",
            "post_dial_delay_ms": pdd,
            "invite_to_200_ms": r["invite_to_200_ms"],
            "caller_to_carrier_ms": round(cmp["delay"]["lag_ms"], 2),
            "carrier_rtp": c["rtp"],
            "caller_rtp": r["rtp"],
        }
    )
    # A sanity bound only (software-emulated VMs are slow); the figure itself goes to the metrics.
    assert pdd is not None and 0 < pdd < 10000, (r, c)


def test_speaqr_call_transforms_both_directions(
    caller, carrier, speaqr_user, call_settings, caller_tone, target, tmp_path, sip_metrics, record_property
):
    shift = call_settings.fake_speaqr_shift_hz
    # The stand-in Speaqr answers per 200 ms chunk (MP3 both ways): keep the call up longer so that
    # a slow target (a software-emulated VM) still returns the processed tone.
    r, c, at_caller, at_carrier = _answered_call(
        caller, carrier, speaqr_user, call_settings, caller_tone, tmp_path, tail_s=6.0
    )
    to_carrier = _tone_checks(at_carrier, TONE_HZ + shift, TONE_HZ, "the carrier")
    to_caller = _tone_checks(at_caller, CARRIER_TONE_HZ + shift, CARRIER_TONE_HZ, "the caller")
    record_property("call_speaqr", {"to_carrier": to_carrier, "to_caller": to_caller})
    sip_metrics.append(
        {
            "test": "call speaqr (stand-in)",
            "post_dial_delay_ms": post_dial_delay_ms(r, c),
            "invite_to_200_ms": r["invite_to_200_ms"],
        }
    )
    rows = target.wait_call_records([r["call_id"]])
    assert [row["processor"] for row in rows.get(r["call_id"], [])] == ["speaqr"], rows


def test_carrier_sees_the_number_and_the_caller_id(caller, carrier, passthrough_user, call_settings, target):
    destination = call_settings.allowed_number("0101")
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5")
    assert r.get("status") == 200, r
    c = carrier.call_for(destination, mark)
    expected = call_settings.expected_callerid(passthrough_user)
    assert c["number"] == destination, c  # number_format e164 in the lab
    assert c["from_user"] == expected, c
    assert c["pai_user"] == expected, c
    _trunk_checks(carrier, c, call_settings)
    rows = target.wait_call_records([r["call_id"]])
    (row,) = rows[r["call_id"]]
    assert row["username"] == passthrough_user
    assert row["service"] == "call"
    assert row["destination"] == destination and row["dialled_number"] == destination, row
    assert row["sip_status"] == "200" and row["cause"] == "normal", row
    assert row["answered_at"] is not None and row["ended_at"] >= row["answered_at"] >= row["started_at"], row
    assert row["processor"] == call_settings.processor_of(passthrough_user), row


def test_fixed_caller_id_does_not_reveal_the_username(caller, carrier, passthrough_user, call_settings):
    if call_settings.callerid != "fixed":
        pytest.skip("the inventory presents the caller's username (callerid: user)")
    destination = call_settings.allowed_number("0102")
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.3")
    assert r.get("status") == 200, r
    c = carrier.call_for(destination, mark)
    for header in (c["from"], c["pai"]):
        assert passthrough_user not in header.split("<", 1)[0], f"the fixed caller-ID shows the username: {header}"
