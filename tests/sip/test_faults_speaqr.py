"""Speaqr fails during a live ``speaqr`` loopback call: the lab's stand-in Speaqr is killed (its
connection drops) or SIGSTOPped (the connection stays up, nothing is acknowledged any more).

What must hold: the configured fallback (the lab's: passthrough) takes over, so the caller hears
the processed tone, then at most SILENCE_BOUND_S of nothing, then the raw tone for the rest of the
call; the switch is logged with the call's channel; the call record says which processor served
which part; and once Speaqr is back a new call is processed by it again.

The bound: a dropped connection is noticed at once; a hung one when an audio upload is not
acknowledged within ``[speaqr] stall_timeout`` (1 s), plus one 200 ms chunk in flight.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.audio import RATE, handover, read_wav, silence, tone, tone_timeline, write_wav
from tests.sip.call_harness import Target
from tests.sip.loopback import LoopbackSetup, as_root, log_lines

FAKE_SPEAQR_UNIT = "speaqr-fake-speaqr.service"
TONE_HZ = 1000.0
BEFORE_FAULT_S = 3.0
AFTER_FAULT_S = 5.0
SILENCE_BOUND_S = 1.5


@pytest.fixture(scope="module")
def setup(setup) -> LoopbackSetup:
    if setup.speaqr_user is None:
        pytest.skip("no user on the speaqr processor with the lab's stand-in Speaqr in this inventory")
    return setup


@pytest.fixture(scope="module")
def long_tone(tmp_path_factory):
    seconds = BEFORE_FAULT_S + AFTER_FAULT_S + 6.0
    return write_wav(
        tmp_path_factory.mktemp("speaqr-faults") / "tone.wav", np.concatenate([tone(TONE_HZ, seconds), silence(0.2)])
    )


def _stand_in(host, signal: str) -> None:
    with as_root(host):
        host.check_output(f"systemctl kill -s {signal} {FAKE_SPEAQR_UNIT}")


def _wait_stand_in_up(host, setup, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    port = int(setup.raw["speaqr_ari_fake_speaqr_port"])
    with as_root(host):
        while (
            host.run(f"systemctl is-active --quiet {FAKE_SPEAQR_UNIT}").rc != 0
            or not host.socket(f"tcp://127.0.0.1:{port}").is_listening
        ):
            assert time.monotonic() < deadline, f"{FAKE_SPEAQR_UNIT} did not come back"
            time.sleep(0.2)


def _heard(received, setup) -> dict:
    timeline = tone_timeline(received, RATE, {"speaqr": TONE_HZ + setup.shift_hz, "raw": TONE_HZ})
    return handover(timeline, "speaqr", "raw").as_dict()


@pytest.mark.parametrize("fault", ["KILL", "STOP"])
def test_speaqr_failing_mid_call_hands_the_call_to_passthrough_within_the_bound(
    host, sip, setup, long_tone, tmp_path, fault, sip_metrics
):
    target = Target(host)
    rec = tmp_path / "received.wav"
    held = sip.hold(setup.speaqr_user, "loopback", "--play", str(long_tone), "--record", str(rec), workdir=tmp_path)
    try:
        assert all(held.state["connected"]), held.state
        time.sleep(BEFORE_FAULT_S)
        _stand_in(host, fault)
        time.sleep(AFTER_FAULT_S)
    finally:
        result = held.stop()
        if fault == "STOP":
            _stand_in(host, "CONT")
    assert result.get("status") == 200 and result["at_stop"]["rtp_flowing"], f"the call did not last: {result}"

    received, _ = read_wav(rec)
    heard = _heard(received, setup)
    sip_metrics.append({"test": f"stand-in Speaqr {fault} mid-call", **heard})
    assert heard["before_s"] >= 1.0, f"the processed tone was not heard before the fault: {heard}"
    assert heard["after_s"] >= AFTER_FAULT_S - SILENCE_BOUND_S - 1.0, f"the raw tone did not take over: {heard}"
    assert heard["gap_s"] is not None and heard["gap_s"] <= SILENCE_BOUND_S, f"silence longer than the bound: {heard}"

    rows = target.wait_call_records([result["call_id"]])[result["call_id"]]
    assert len(rows) == 1 and rows[0]["cause"] == "normal" and rows[0]["processor"] == "speaqr", rows
    parts = rows[0]["processor_parts"].split()
    assert [p.split("@")[0] for p in parts] == ["speaqr", "passthrough"], rows[0]
    switched_after = float(parts[1].split("@")[1]) - float(parts[0].split("@")[1])
    # From Speaqr's start (before the answer) to the switch: the fault, 3 s after the call connected.
    assert BEFORE_FAULT_S - 0.5 <= switched_after <= BEFORE_FAULT_S + SILENCE_BOUND_S + 3.0, rows[0]
    channel = rows[0]["channel_id"]
    assert log_lines(host, f"channel={channel} processor failed mid-call", also="continuing with passthrough"), (
        f"the switch of channel {channel} was not logged"
    )

    _wait_stand_in_up(host, setup)
    after_rec = tmp_path / "after.wav"
    after = sip.call(
        setup.speaqr_user, "loopback", "--play", str(long_tone), "--record", str(after_rec), "--duration", "4"
    )
    assert after.get("status") == 200, after
    again = _heard(read_wav(after_rec)[0], setup)
    assert again["before_s"] >= 2.0 and again["after_s"] == 0, (
        f"a new call after the fault was not processed by Speaqr: {again}"
    )
