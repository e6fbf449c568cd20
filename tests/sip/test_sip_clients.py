"""Real SIP clients (pjsua2: TLS 1.2 verified against the lab CA, SDES-SRTP, PCMU) against the target.

Audio checks judge what came back by analysis (level, dominant frequency,
cross-correlation with what was sent), never by "the call connected".
"""

from __future__ import annotations

import subprocess

import pytest

from tests.audio import (
    RATE,
    active_segment,
    band_energy_ratio,
    compare,
    is_silent,
    read_wav,
)
from tests.sip.harness import TONE_HZ

TLS_FAILURE_CODES = {408, 502, 503}
# The echo is judged on quarter-second windows of the sent audio (tests.audio.segmented_match,
# a window every 50 ms): a window matches when its normalised cross-correlation peak reaches
# MATCH_PEAK, and MATCH_FRACTION of the audible sent audio must lie in matched windows. On a busy
# host the client's adaptive jitter buffer grows and then sheds 10 ms steps during the call, which
# defeats one whole-call correlation but not the windows; unrelated speech peaks below ~0.65,
# silence, another tone or noise below 0.2. The whole-call correlation gives the round trip when
# it explains the echo (peak >= MATCH_PEAK), else the matched windows' median delay does.
MATCH_PEAK = 0.9
MATCH_FRACTION = 0.8


def _tls_errors(result: dict) -> str:
    msgs = []
    for ev in result.get("transport", []):
        msgs.append(ev.get("error", ""))
        msgs += ev.get("tls", {}).get("verify_msgs", [])
    return " | ".join(m for m in msgs if m)


# --- registration -----------------------------------------------------------------------


def test_register_over_tls_verified_against_lab_ca(sip, sip_target):
    for user in sip_target.users:
        r = sip.register(user)
        assert r["ok"], f"{user}: {r}"
        assert r["status"] == 200
        tls = [ev["tls"] for ev in r["transport"] if ev.get("tls")]
        assert tls and tls[0]["verify_status"] == 0, r["transport"]
        assert r["tcp_nodelay"] is True


def test_register_with_wrong_password_is_refused(sip, sip_user, served_after):
    r = sip.register(sip_user, password="definitely-not-the-password")
    assert not r["ok"], r
    assert r["status"] == 401, r
    served_after()


def test_register_of_unknown_user_is_refused(sip, served_after):
    r = sip.register("no-such-user-qa", password="whatever")
    assert not r["ok"], r
    # The same answer as a wrong password: the registrar does not tell which users exist.
    assert r["status"] == 401, r
    served_after()


def test_client_not_trusting_the_server_ca_cannot_register(sip, sip_user, tmp_path, served_after):
    key, crt = tmp_path / "other-ca.key", tmp_path / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=Some other CA",
        ],
        check=True,
        capture_output=True,
    )
    r = sip.register(sip_user, ca=str(crt))
    assert not r["ok"], r
    assert r["status"] in TLS_FAILURE_CODES, r
    errors = _tls_errors(r) + " " + r.get("reason", "")
    assert "ECERTVERIF" in errors or "untrusted" in errors.lower(), r
    served_after()


# --- refused offers ------------------------------------------------------------------


def test_call_offering_plain_rtp_is_refused_488(sip, sip_user, served_after):
    r = sip.call(sip_user, "loopback", "--srtp", "disabled", "--duration", "0.5")
    assert r["status"] == 488, r
    assert not r["connected"]
    served_after()


def test_call_offering_only_pcma_is_refused_488(sip, sip_user, served_after):
    r = sip.call(sip_user, "loopback", "--codec", "PCMA", "--duration", "0.5")
    assert r["status"] == 488, r
    assert not r["connected"]
    served_after()


# --- loopback audio --------------------------------------------------------------------


def _echo_call(sip, user, wav, tmp_path, name):
    rec = tmp_path / f"{name}-received.wav"
    r = sip.call(user, "loopback", "--play", str(wav), "--record", str(rec))
    assert r.get("status") == 200, r
    sent, _ = read_wav(wav)
    received, rate = read_wav(rec)
    assert rate == RATE
    return r, sent, received


def _media_checks(r):
    assert r["codec"] == "PCMU/8000", r
    media = r["media"] or {}
    assert media.get("profile") == "RTP/SAVP", media
    assert media.get("crypto") == ["AES_CM_128_HMAC_SHA1_80"], media
    assert [p for p in media.get("rtpmap", []) if not p.startswith("telephone-event")] == ["PCMU/8000"], media


def _round_trip_ms(c: dict) -> float | None:
    """The echo delay: one lag for the whole call when one explains it, else the median of the
    windows (an adaptive jitter buffer may have changed the delay during the call)."""
    if c["delay"]["peak"] >= MATCH_PEAK:
        return round(c["delay"]["lag_ms"], 2)
    lag = c["segments"]["lag_ms_median"]
    return round(lag, 2) if lag is not None else None


def _judge_echo(c: dict, what: str) -> None:
    seg = c["segments"]
    assert seg["windows"], f"no audible {what} was sent? {c}"
    assert seg["matched_fraction"] >= MATCH_FRACTION, (
        f"the {what} did not come back: {seg['matched_fraction']:.0%} of it was found in the received "
        f"audio (windows with peak >= {MATCH_PEAK}), need {MATCH_FRACTION:.0%}: {c}"
    )
    rt = _round_trip_ms(c)
    assert rt is not None and 0 <= rt < 500, c


def test_loopback_returns_the_same_tone(sip, sip_user, audio_files, tmp_path, sip_metrics, record_property):
    r, sent, received = _echo_call(sip, sip_user, audio_files["tone"], tmp_path, "tone")
    _media_checks(r)
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    record_property("sip_loopback_tone", c)
    sip_metrics.append(
        {
            "test": "loopback tone",
            "invite_to_200_ms": r["invite_to_200_ms"],
            "round_trip_ms": _round_trip_ms(c),
            "peak": c["delay"]["peak"],
            "matched_fraction": c["segments"]["matched_fraction"],
            "rtp": r["rtp"],
        }
    )
    assert not is_silent(received), c
    echoed = active_segment(received, RATE)
    assert c["received_freq_hz"] == pytest.approx(TONE_HZ, abs=10), c
    assert band_energy_ratio(echoed, RATE, TONE_HZ) > 0.8, c
    _judge_echo(c, "tone")


def test_loopback_returns_the_same_speech(sip, sip_user, audio_files, tmp_path, sip_metrics, record_property):
    if "speech" not in audio_files:
        pytest.fail(f"could not make speech audio: {audio_files.get('speech_error')}")
    r, sent, received = _echo_call(sip, sip_user, audio_files["speech"], tmp_path, "speech")
    _media_checks(r)
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    record_property("sip_loopback_speech", c)
    sip_metrics.append(
        {
            "test": "loopback speech",
            "invite_to_200_ms": r["invite_to_200_ms"],
            "round_trip_ms": _round_trip_ms(c),
            "peak": c["delay"]["peak"],
            "matched_fraction": c["segments"]["matched_fraction"],
            "rtp": r["rtp"],
        }
    )
    assert not is_silent(received), c
    _judge_echo(c, "speech")


def test_four_simultaneous_loopback_calls_each_get_their_own_audio(sip, sip_user, audio_files, tmp_path, sip_metrics):
    rec = tmp_path / "conc.wav"
    r = sip.call(sip_user, "loopback", "--concurrent", "4", "--play", str(audio_files["tone"]), "--record", str(rec))
    assert len(r["calls"]) == 4, r
    sent, _ = read_wav(audio_files["tone"])
    for call in r["calls"]:
        assert call["status"] == 200, call
        received, _ = read_wav(call["record"])
        c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
        assert c["received_freq_hz"] == pytest.approx(TONE_HZ, abs=10), c
        _judge_echo(c, f"tone of call {call['index']}")
        sip_metrics.append(
            {
                "test": "4 concurrent loopback",
                "invite_to_200_ms": call["invite_to_200_ms"],
                "round_trip_ms": _round_trip_ms(c),
                "peak": c["delay"]["peak"],
                "matched_fraction": c["segments"]["matched_fraction"],
            }
        )
