"""Unit tests of the audio helpers the SIP tests judge calls with (synthetic signals only)."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from tests.audio import (
    RATE,
    active_segment,
    band_energy_ratio,
    compare,
    dominant_frequency,
    estimate_delay,
    handover,
    is_silent,
    read_wav,
    rms_dbfs,
    segmented_match,
    silence,
    speech,
    tone,
    tone_bursts,
    tone_timeline,
    ulaw,
    write_wav,
)

rng = np.random.default_rng(20261127)


def delayed(
    x: np.ndarray, lag: int, total: int | None = None, gain: float = 1.0, noise_dbfs: float | None = None
) -> np.ndarray:
    """``x`` starting ``lag`` samples into a buffer (what an echo recording looks like)."""
    total = total or len(x) + lag + 800
    out = np.zeros(total)
    out[lag : lag + len(x)] = gain * x[: total - lag]
    if noise_dbfs is not None:
        out += rng.normal(0.0, 10 ** (noise_dbfs / 20), total)
    return out


# --- frequency -----------------------------------------------------------------------


@pytest.mark.parametrize("freq", [300.0, 440.0, 1000.0, 2500.0, 3400.0])
def test_dominant_frequency_of_pure_tones(freq):
    assert dominant_frequency(tone(freq, 1.0), RATE) == pytest.approx(freq, abs=1.0)


def test_dominant_frequency_survives_ulaw_and_noise():
    x = ulaw(tone(1000.0, 0.5, amplitude=0.3)) + rng.normal(0, 0.01, 4000)
    assert dominant_frequency(x, RATE) == pytest.approx(1000.0, abs=2.0)


def test_dominant_frequency_of_silence_is_zero():
    assert dominant_frequency(silence(1.0), RATE) == 0.0
    assert dominant_frequency(np.zeros(0), RATE) == 0.0


def test_band_energy_ratio_tells_tones_apart():
    x = tone(1000.0, 1.0)
    assert band_energy_ratio(x, RATE, 1000.0) > 0.95
    assert band_energy_ratio(x, RATE, 1200.0) < 0.01
    assert band_energy_ratio(silence(1.0), RATE, 1000.0) == 0.0
    noise = rng.normal(0, 0.1, RATE)
    assert band_energy_ratio(noise, RATE, 1000.0) < 0.1


# --- level ---------------------------------------------------------------------------


def test_levels():
    assert rms_dbfs(tone(1000.0, 1.0, amplitude=1.0, fade_s=0)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(silence(0.1)) == float("-inf")
    assert is_silent(silence(1.0))
    assert is_silent(rng.normal(0, 10 ** (-70 / 20), RATE))  # -70 dBFS hiss counts as silence
    assert not is_silent(tone(1000.0, 1.0, amplitude=0.01))  # -43 dBFS tone does not


def test_active_segment_trims_silence():
    x = np.concatenate([silence(0.5), tone(800.0, 0.3), silence(0.7)])
    seg = active_segment(x, RATE)
    assert len(seg) == pytest.approx(0.3 * RATE, abs=0.02 * RATE)
    assert active_segment(silence(1.0), RATE).size == 0


# --- delay / "is it the same audio" -----------------------------------------------


@pytest.mark.parametrize("lag", [0, 1, 37, 200, 1234])
def test_delay_of_tone_bursts(lag):
    sent = tone_bursts(1000.0)
    d = estimate_delay(sent, delayed(sent, lag), RATE)
    assert d.lag_samples == pytest.approx(lag, abs=0.5)
    assert d.lag_ms == pytest.approx(1000.0 * lag / RATE, abs=0.1)
    assert d.peak > 0.99
    assert d.gain == pytest.approx(1.0, abs=0.02)


def test_delay_through_a_pcmu_channel_with_gain_and_noise():
    sent = tone_bursts(1000.0, amplitude=0.4)
    received = delayed(ulaw(sent) * 0.5, 200, noise_dbfs=-60)
    d = estimate_delay(sent, received, RATE, max_lag_s=1.0)
    assert d.lag_ms == pytest.approx(25.0, abs=0.1)
    assert d.peak > 0.98
    assert d.gain == pytest.approx(0.5, abs=0.05)


def test_delay_of_broadband_signal_is_exact():
    sent = rng.normal(0, 0.2, RATE // 2)
    d = estimate_delay(sent, delayed(sent, 321, noise_dbfs=-40), RATE)
    assert d.lag_samples == pytest.approx(321, abs=0.5)
    assert d.peak > 0.95


def test_truncated_echo_is_still_found():
    sent = tone_bursts(1000.0)
    received = delayed(sent, 400, total=len(sent) - 1000)  # the call ended before the echo did
    d = estimate_delay(sent, received, RATE)
    assert d.lag_samples == pytest.approx(400, abs=0.5)
    assert d.peak > 0.7


def test_silence_does_not_match():
    d = estimate_delay(tone_bursts(1000.0), silence(2.0), RATE)
    assert d.peak < 0.05


def test_low_level_hiss_does_not_match():
    d = estimate_delay(tone_bursts(1000.0), rng.normal(0, 10 ** (-65 / 20), 2 * RATE), RATE)
    assert d.peak < 0.1


def test_a_different_tone_does_not_match():
    sent = tone_bursts(1000.0)
    d = estimate_delay(sent, delayed(tone_bursts(1200.0), 200), RATE)
    assert d.peak < 0.2
    assert band_energy_ratio(tone_bursts(1200.0), RATE, 1000.0) < 0.01


def test_unrelated_noise_does_not_match():
    sent = rng.normal(0, 0.2, RATE)
    d = estimate_delay(sent, rng.normal(0, 0.2, 2 * RATE), RATE)
    assert d.peak < 0.1


def test_lag_window_limits_the_search():
    sent = rng.normal(0, 0.2, RATE // 2)
    received = delayed(sent, 4000)  # echo 500 ms late
    assert estimate_delay(sent, received, RATE, max_lag_s=0.25).peak < 0.1
    assert estimate_delay(sent, received, RATE, max_lag_s=1.0).lag_samples == pytest.approx(4000, abs=0.5)


def test_negative_lag_only_when_asked():
    sent = rng.normal(0, 0.2, RATE // 2)
    received = sent[100:]  # received starts 100 samples "before" sent
    assert estimate_delay(sent, received, RATE).lag_samples >= 0
    d = estimate_delay(sent, received, RATE, min_lag_s=-0.1)
    assert d.lag_samples == pytest.approx(-100, abs=0.5)
    assert d.peak > 0.95


def test_empty_inputs():
    assert estimate_delay(np.zeros(0), tone(1000.0, 0.1), RATE).peak == 0.0
    assert estimate_delay(tone(1000.0, 0.1), np.zeros(0), RATE).peak == 0.0
    assert estimate_delay(silence(0.1), tone(1000.0, 0.1), RATE).peak == 0.0


def test_compare_summarises_an_echo():
    sent = tone_bursts(1000.0)
    c = compare(sent, delayed(ulaw(sent), 200, noise_dbfs=-70), RATE)
    assert c["received_freq_hz"] == pytest.approx(1000.0, abs=2)
    assert c["delay"]["lag_ms"] == pytest.approx(25.0, abs=0.1)
    assert c["delay"]["peak"] > 0.98


# --- windowed matching (delay that changes during the call) ---------------------------


def _echo_with_jump(sent: np.ndarray, first_lag: int, jump: int, at: int) -> np.ndarray:
    """An echo whose delay grows by ``jump`` samples at sample ``at`` (a jitter buffer growing)."""
    out = np.zeros(len(sent) + first_lag + jump + 800)
    out[first_lag : first_lag + at] = sent[:at]
    out[first_lag + at + jump : first_lag + len(sent) + jump] = sent[at:]
    return out


def test_segments_find_an_echo_whose_delay_jumps():
    sent = rng.normal(0, 0.2, 3 * RATE)
    received = _echo_with_jump(ulaw(sent), 200, 960, 12000)  # 25 ms, then 145 ms from 1.5 s
    whole = estimate_delay(sent, received, RATE)
    assert whole.peak < 0.8  # one lag cannot explain it all
    m = segmented_match(sent, received, RATE)
    assert m.matched_fraction == 1.0
    assert m.lag_ms_first == pytest.approx(25.0, abs=0.2)
    assert m.lag_ms_min == pytest.approx(25.0, abs=0.2)
    assert m.lag_ms_max == pytest.approx(145.0, abs=0.2)


def test_segments_follow_a_jitter_buffer_shedding_10ms_steps():
    sent = rng.normal(0, 0.2, 4 * RATE)
    received = np.zeros(len(sent) + 3000)
    lag, step = 1640, 80  # 205 ms at first, then 10 ms less every 0.3 s (what a busy host showed)
    for start in range(0, len(sent), 2400):
        seg = ulaw(sent[start : start + 2400])
        received[start + lag : start + lag + len(seg)] = seg
        lag = max(200, lag - step)
    assert estimate_delay(sent, received, RATE).peak < 0.5
    m = segmented_match(sent, received, RATE)
    assert m.matched_fraction >= 0.9
    assert m.window_fraction < m.matched_fraction  # windows holding a step do not match alone
    assert m.lag_ms_first == pytest.approx(205.0, abs=0.5)
    assert m.lag_ms_min < m.lag_ms_first


def test_segments_of_tone_bursts_match_their_echo():
    sent = tone_bursts(1000.0)
    m = segmented_match(sent, delayed(ulaw(sent), 200, noise_dbfs=-60), RATE)
    assert m.matched_fraction == 1.0
    assert m.median_peak > 0.98


@pytest.mark.parametrize(
    "received",
    [
        silence(2.0),
        rng.normal(0, 10 ** (-65 / 20), 2 * RATE),
        np.concatenate([silence(0.025), tone_bursts(1200.0), silence(0.5)]),
    ],
    ids=["silence", "hiss", "other-tone"],
)
def test_segments_do_not_match_other_audio(received):
    m = segmented_match(tone_bursts(1000.0), received, RATE)
    assert m.matched_fraction == 0.0
    assert m.lag_ms_median is None
    assert m.median_peak < 0.2


def test_segments_skip_silent_windows():
    sent = np.concatenate([silence(1.0), tone_bursts(1000.0)])
    m = segmented_match(sent, delayed(sent, 200), RATE)
    assert all(start > 1.0 - 0.25 for start, _, _ in m.windows)  # windows reaching into the audio
    assert segmented_match(silence(1.0), silence(1.0), RATE).windows == []


# --- files ---------------------------------------------------------------------------


def test_wav_round_trip(tmp_path):
    x = tone(1000.0, 0.25, amplitude=0.5)
    p = write_wav(tmp_path / "t.wav", x)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 2000)
    y, rate = read_wav(p)
    assert rate == RATE
    assert np.max(np.abs(y - x)) < 1e-4


def test_read_wav_rejects_8_bit(tmp_path):
    p = tmp_path / "u8.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(800))
    with pytest.raises(ValueError):
        read_wav(p)


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox not installed")
def test_speech_is_8khz_mono_and_finds_itself(tmp_path):
    p = speech("testing one two three", tmp_path / "s.wav")
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    x, _ = read_wav(p)
    assert not is_silent(x)
    d = estimate_delay(x, delayed(ulaw(x), 333, noise_dbfs=-60), RATE)
    assert d.lag_samples == pytest.approx(333, abs=0.5)
    assert d.peak > 0.95
    other, _ = read_wav(speech("a completely different sentence", tmp_path / "o.wav"))
    assert estimate_delay(x, delayed(other, 333), RATE).peak < 0.5
    assert segmented_match(x, delayed(ulaw(other), 333), RATE).matched_fraction < 0.1


def test_a_handover_between_two_tones_measures_the_silence_between_them():
    x = np.concatenate([tone(1300.0, 2.0), silence(0.6), tone(1000.0, 3.0)])
    timeline = tone_timeline(x, RATE, {"processed": 1300.0, "raw": 1000.0})
    h = handover(timeline, "processed", "raw")
    assert h.gap_s == pytest.approx(0.6, abs=0.1)
    assert h.before_s == pytest.approx(2.0, abs=0.1) and h.after_s == pytest.approx(3.0, abs=0.1)
    assert h.last_before_at_s == pytest.approx(1.95, abs=0.1)


def test_a_timeline_without_the_second_tone_has_no_handover():
    x = np.concatenate([tone(1300.0, 1.0), silence(2.0)])
    h = handover(tone_timeline(x, RATE, {"processed": 1300.0, "raw": 1000.0}), "processed", "raw")
    assert h.first_after_at_s is None and h.gap_s is None and h.after_s == 0
