"""The loopback service end to end: real TLS+SRTP clients -> Asterisk -> AGI check (MariaDB) ->
Stasis -> the ARI application -> processor -> back to the caller.

- passthrough (a user on the default processor): a tone and a spoken phrase come back,
  correlated with what was sent (judged per quarter-second window, tests.audio.segmented_match);
- the stand-in Speaqr (a user with ``processor: speaqr``, lab only): the tone comes back
  frequency-shifted and the raw tone does not;
- refusals: each with its documented SIP status and a log line holding the call's Call-ID on
  the target (AGI check in the journal, dialplan in messages.log).
"""

from __future__ import annotations

import secrets
import string

import numpy as np
import pytest

from tests.audio import (
    RATE,
    active_segment,
    band_energy_ratio,
    compare,
    dominant_frequency,
    is_silent,
    read_wav,
    silence,
    tone,
    write_wav,
)
from tests.sip.loopback import (
    as_root,
    log_lines,
    wait_until_unregistered,
)

MATCH_PEAK = 0.9
MATCH_FRACTION = 0.8
TONE_HZ = 1000.0


@pytest.fixture(scope="module")
def other_user(sip_target, alice) -> str:
    others = [u for u in sip_target.users if u != alice]
    if not others:
        pytest.skip("needs a second enabled user")
    return others[0]


def _judge_echo(c: dict, what: str) -> float:
    seg = c["segments"]
    assert seg["windows"], f"no audible {what} was sent? {c}"
    assert seg["matched_fraction"] >= MATCH_FRACTION, (
        f"the {what} did not come back: {seg['matched_fraction']:.0%} of it was found in the received "
        f"audio (windows with peak >= {MATCH_PEAK}), need {MATCH_FRACTION:.0%}: {c}"
    )
    rt = c["delay"]["lag_ms"] if c["delay"]["peak"] >= MATCH_PEAK else seg["lag_ms_median"]
    assert rt is not None and 0 <= rt < 1000, c
    return round(rt, 1)


def _loopback(sip, user, wav, tmp_path, name, **kw) -> tuple[dict, np.ndarray, np.ndarray]:
    rec = tmp_path / f"{name}-received.wav"
    r = sip.call(user, "loopback", "--play", str(wav), "--record", str(rec), *kw.pop("extra", ()), **kw)
    assert r.get("status") == 200, r
    assert r["codec"] == "PCMU/8000" and (r["media"] or {}).get("profile") == "RTP/SAVP", r
    sent, _ = read_wav(wav)
    received, rate = read_wav(rec)
    assert rate == RATE
    return r, sent, received


# --- audio ----------------------------------------------------------------------------------


def test_passthrough_returns_the_tone_correlated(sip, alice, audio_files, tmp_path, sip_metrics, host):
    r, sent, received = _loopback(sip, alice, audio_files["tone"], tmp_path, "pt-tone")
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    assert not is_silent(received), c
    assert c["received_freq_hz"] == pytest.approx(TONE_HZ, abs=10), c
    assert band_energy_ratio(active_segment(received, RATE), RATE, TONE_HZ) > 0.8, c
    rt = _judge_echo(c, "tone")
    sip_metrics.append(
        {"test": "loopback passthrough tone", "invite_to_200_ms": r["invite_to_200_ms"], "round_trip_ms": rt}
    )
    lines = log_lines(host, r["call_id"], also="processor passthrough")
    assert lines or log_lines(host, r["call_id"]), f"no log line of call {r['call_id']} on the target"


def test_passthrough_returns_the_spoken_phrase_correlated(sip, alice, audio_files, tmp_path, sip_metrics):
    if "speech" not in audio_files:
        pytest.fail(f"could not make speech audio (espeak-ng): {audio_files.get('speech_error')}")
    r, sent, received = _loopback(sip, alice, audio_files["speech"], tmp_path, "pt-speech")
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    assert not is_silent(received), c
    rt = _judge_echo(c, "spoken phrase")
    sip_metrics.append(
        {"test": "loopback passthrough speech", "invite_to_200_ms": r["invite_to_200_ms"], "round_trip_ms": rt}
    )


@pytest.fixture(scope="module")
def long_tone(tmp_path_factory):
    """2 s of a continuous 1 kHz tone: long enough for several Speaqr chunks."""
    return write_wav(
        tmp_path_factory.mktemp("stand-in") / "tone-2s.wav", np.concatenate([tone(TONE_HZ, 2.0), silence(0.3)])
    )


def test_stand_in_speaqr_returns_the_shifted_tone_and_not_the_raw_one(
    sip, setup, long_tone, tmp_path, sip_metrics, host
):
    if setup.speaqr_user is None:
        pytest.skip("no user on the speaqr processor with the lab's stand-in Speaqr in this inventory")
    r, sent, received = _loopback(sip, setup.speaqr_user, long_tone, tmp_path, "speaqr", extra=("--tail", "1.5"))
    assert not is_silent(received), "nothing came back from the stand-in Speaqr"
    back = active_segment(received, RATE)
    shifted = TONE_HZ + setup.shift_hz
    found = {
        "dominant_hz": round(dominant_frequency(back, RATE), 1),
        "energy_at_shifted": round(band_energy_ratio(back, RATE, shifted), 4),
        "energy_at_raw": round(band_energy_ratio(back, RATE, TONE_HZ), 4),
        "active_s": round(len(back) / RATE, 2),
    }
    sip_metrics.append({"test": "loopback stand-in speaqr", "invite_to_200_ms": r["invite_to_200_ms"], **found})
    assert found["active_s"] >= 1.0, found
    assert found["dominant_hz"] == pytest.approx(shifted, abs=15), found
    assert found["energy_at_shifted"] > 0.5, found
    assert found["energy_at_raw"] < 0.05, f"the raw tone came back: {found}"
    assert log_lines(host, r["call_id"]), f"no log line of call {r['call_id']}"
    started = [line for line in log_lines(host, "processor speaqr started") if line]
    assert started, "the ARI application never logged a speaqr processor"


# --- refusals -------------------------------------------------------------------------------

GARBAGE = "".join(
    secrets.choice(string.ascii_letters + string.digits + "!#$%&*+-./:;<=>?@[]^_`{|}~") for _ in range(2048)
)

# (id, extension, headers (ALICE/OTHER placeholders), SIP status, reason in the log line)
REFUSALS = [
    ("missing-x-origin", "loopback", {"X-Destination": "test"}, 400, "missing_header"),
    ("missing-x-destination", "loopback", {"X-Origin": "ALICE"}, 400, "missing_header"),
    ("x-origin-of-another-user", "loopback", {"X-Origin": "OTHER", "X-Destination": "test"}, 403, "origin_mismatch"),
    ("unknown-extension", "nosuchservice", {"X-Origin": "ALICE", "X-Destination": "test"}, 404, "unknown_extension"),
    ("2kb-garbage-header", "loopback", {"X-Origin": "ALICE", "X-Destination": GARBAGE}, 400, "header_too_long"),
    ("sql-quote", "loopback", {"X-Origin": "ALICE", "X-Destination": "x' OR '1'='1"}, 400, "bad_characters"),
    ("sql-drop", "loopback", {"X-Origin": "ALICE", "X-Destination": 'a"; DROP TABLE users; --'}, 400, "bad_characters"),
    ("dialplan-function", "loopback", {"X-Origin": "ALICE", "X-Destination": "${SHELL(id)}"}, 400, "bad_characters"),
    ("dialplan-expression", "loopback", {"X-Origin": "ALICE", "X-Destination": "$[1+1],x)"}, 400, "bad_characters"),
    (
        "metacharacters-in-x-origin",
        "loopback",
        {"X-Origin": "alice'--", "X-Destination": "test"},
        400,
        "bad_characters",
    ),
    ("call-service-same-checks", "call", {"X-Destination": "+34911234567"}, 400, "missing_header"),
]


def _fill(headers: dict, alice: str, other: str) -> dict:
    return {k: v.replace("ALICE", alice).replace("OTHER", other) for k, v in headers.items()}


def _assert_refused(host, r: dict, status: int, reason: str) -> list[str]:
    assert r.get("status") == status, r
    assert not r.get("connected"), r
    call_id = r.get("call_id")
    assert call_id, r
    lines = log_lines(host, call_id, also=f"reason={reason}")
    assert lines, f"no log line on the target with call_id {call_id} and reason={reason}"
    assert any(f"sip_status={status}" in line for line in lines), lines
    return lines


@pytest.mark.parametrize(("case", "to", "headers", "status", "reason"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusal_has_its_status_and_a_log_line_with_the_call_id(
    sip, alice, other_user, host, case, to, headers, status, reason, sip_metrics, served_after
):
    r = sip.call(alice, to, "--duration", "0.5", headers=_fill(headers, alice, other_user))
    _assert_refused(host, r, status, reason)
    sip_metrics.append({"test": f"refusal {case}", "status": r["status"]})
    served_after()


@pytest.mark.parametrize("header", ["X-Origin", "X-Destination"])
def test_a_header_sent_twice_is_refused_400_even_with_the_own_name_first(
    sip, alice, other_user, host, header, served_after
):
    second = other_user if header == "X-Origin" else "other"
    r = sip.call(
        alice,
        "loopback",
        "--duration",
        "0.5",
        "--header",
        f"{header}: {second}",
        headers={"X-Origin": alice, "X-Destination": "test"},
    )
    _assert_refused(host, r, 400, "duplicate_header")
    served_after()


def test_disabled_user_is_refused_403(sip, setup, host, served_after):
    if not setup.disabled:
        pytest.skip("no disabled user in this inventory")
    user, password = next(iter(setup.disabled.items()))
    r = sip.call(
        user, "loopback", "--duration", "0.5", headers={"X-Origin": user, "X-Destination": "test"}, password=password
    )
    assert r.get("register", {}).get("ok"), f"the disabled user {user} can still register: {r}"
    _assert_refused(host, r, 403, "user_disabled")
    served_after()


def test_call_without_registering_first_is_refused_403(sip, alice, host, served_after):
    wait_until_unregistered(host, alice)
    r = sip.call(alice, "loopback", "--no-register", "--duration", "0.5")
    _assert_refused(host, r, 403, "not_registered")
    served_after()


def test_bad_input_left_the_users_table_alone(host, setup, sip_target):
    with as_root(host):
        out = host.check_output(f"mariadb -N -B -e 'SELECT username FROM {setup.database}.users ORDER BY username'")
    names = set(out.split())
    assert set(sip_target.users) <= names, out


def test_echo_extension_is_the_lab_reference(sip, setup, alice):
    """The comparison extension answers with Asterisk's own Echo() (only where enabled)."""
    if setup.echo_extension is None:
        r = sip.call(alice, "echo", "--duration", "0.5")
        assert r.get("status") == 404, f"echo must not be reachable when it is not enabled: {r}"
        return
    r = sip.call(alice, setup.echo_extension, "--duration", "0.5", headers={})
    assert r.get("status") == 200, r
