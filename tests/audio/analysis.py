"""Analysis of sent and received call audio (numpy only).

- ``dominant_frequency``: strongest spectral peak (Hann window, FFT,
  parabolic interpolation between bins).
- ``band_energy_ratio``: share of the signal's energy near one frequency,
  i.e. "is it that tone and not something else".
- ``rms_dbfs`` / ``is_silent``: level against full scale.
- ``estimate_delay``: normalised cross-correlation between the sent and the
  received signal; the lag of the peak is the delay (for an echo call that is
  the audio round trip) and the peak value (1.0 = identical shape, ~0 =
  unrelated) says whether the received audio *is* the sent audio.
- ``segmented_match``: the same per quarter-second window, for calls whose delay
  changes while they last (adaptive jitter buffers).
- ``ulaw``: G.711 μ-law encode+decode, to model the PCMU channel in unit tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SILENCE_DBFS = -50.0  # a PCMU channel carrying "silence" measures well below this


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dB relative to a full-scale square wave (a full-scale sine is -3 dBFS)."""
    r = rms(x)
    return float(20 * np.log10(r)) if r > 0 else float("-inf")


def is_silent(x: np.ndarray, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    return rms_dbfs(x) < threshold_dbfs


def active_segment(x: np.ndarray, rate: int, threshold_dbfs: float = -40.0, frame_s: float = 0.01) -> np.ndarray:
    """``x`` from its first to its last frame louder than ``threshold_dbfs`` (empty if none)."""
    x = np.asarray(x, dtype=float)
    n = max(1, int(frame_s * rate))
    frames = x[: len(x) // n * n].reshape(-1, n)
    if frames.size == 0:
        return x[:0]
    level = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.nonzero(level >= 10 ** (threshold_dbfs / 20))[0]
    if loud.size == 0:
        return x[:0]
    return x[loud[0] * n : (loud[-1] + 1) * n]


def _spectrum(x: np.ndarray, rate: int, min_resolution_hz: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    x = x - x.mean()
    nfft = max(len(x), int(np.ceil(rate / min_resolution_hz)))
    nfft = 1 << (nfft - 1).bit_length()
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    return freqs, mag


def dominant_frequency(x: np.ndarray, rate: int, min_hz: float = 20.0) -> float:
    """Frequency (Hz) of the strongest spectral component above ``min_hz``; 0.0 for silence."""
    x = np.asarray(x, dtype=float)
    if x.size < 4 or not np.any(x):
        return 0.0
    freqs, mag = _spectrum(x, rate)
    lo = int(np.searchsorted(freqs, min_hz))
    if lo >= len(mag) - 1:
        return 0.0
    k = lo + int(np.argmax(mag[lo:]))
    if mag[k] == 0:
        return 0.0
    if 0 < k < len(mag) - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-30)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        offset = 0.0
    return float(freqs[k] + offset * (freqs[1] - freqs[0]))


def band_energy_ratio(x: np.ndarray, rate: int, freq_hz: float, half_width_hz: float = 50.0) -> float:
    """Fraction (0..1) of the spectral energy within ``freq_hz`` ± ``half_width_hz``."""
    freqs, mag = _spectrum(x, rate)
    power = mag**2
    total = power.sum()
    if total <= 0:
        return 0.0
    band = (freqs >= freq_hz - half_width_hz) & (freqs <= freq_hz + half_width_hz)
    return float(power[band].sum() / total)


def tone_timeline(
    x: np.ndarray, rate: int, freqs: dict[str, float], frame_s: float = 0.05, share: float = 0.5
) -> list[str | None]:
    """Per ``frame_s`` frame, the name in ``freqs`` whose tone holds over ``share`` of the
    frame's energy, or ``None`` (silence or something else)."""
    x = np.asarray(x, dtype=float)
    n = max(1, int(frame_s * rate))
    out: list[str | None] = []
    for start in range(0, len(x) - n + 1, n):
        frame = x[start : start + n]
        label = None
        if not is_silent(frame, -40.0):
            ratios = {name: band_energy_ratio(frame, rate, hz, half_width_hz=60.0) for name, hz in freqs.items()}
            best = max(ratios, key=lambda k: ratios[k])
            label = best if ratios[best] > share else None
        out.append(label)
    return out


@dataclass(frozen=True)
class Handover:
    """From tone ``before`` to tone ``after`` in a timeline (seconds from the recording's start)."""

    before_s: float  # how long ``before`` was heard in all
    last_before_at_s: float | None
    first_after_at_s: float | None  # the first ``after`` frame following the last ``before`` one
    after_s: float  # how long ``after`` was heard after that
    gap_s: float | None  # neither tone in between

    def as_dict(self) -> dict:
        return asdict(self)


def handover(timeline: list[str | None], before: str, after: str, frame_s: float = 0.05) -> Handover:
    """Where the audio changed from ``before`` to ``after`` and how long nothing of either played."""
    befores = [i for i, label in enumerate(timeline) if label == before]
    last = befores[-1] if befores else None
    start = 0 if last is None else last + 1
    afters = [i for i in range(start, len(timeline)) if timeline[i] == after]
    first = afters[0] if afters else None
    gap = None if last is None or first is None else round((first - last - 1) * frame_s, 3)
    return Handover(
        before_s=round(len(befores) * frame_s, 3),
        last_before_at_s=None if last is None else round(last * frame_s, 3),
        first_after_at_s=None if first is None else round(first * frame_s, 3),
        after_s=round(len(afters) * frame_s, 3),
        gap_s=gap,
    )


@dataclass(frozen=True)
class Delay:
    """Result of ``estimate_delay``.

    lag_samples / lag_ms: how much later the sent signal appears in the received one.
    peak: normalised cross-correlation at that lag (-1..1; 1 = same waveform).
    gain: least-squares amplitude of the sent signal inside the received one at that lag.
    """

    lag_samples: float
    lag_ms: float
    peak: float
    gain: float

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_delay(
    sent: np.ndarray, received: np.ndarray, rate: int, min_lag_s: float = 0.0, max_lag_s: float | None = None
) -> Delay:
    """Find where ``sent`` occurs in ``received``.

    For every lag k (``received[k + i]`` compared with ``sent[i]``) within
    [min_lag_s, max_lag_s] the correlation is normalised by the energy of
    ``sent`` and of the received window it overlaps, so the peak does not
    depend on the channel's gain; outside ``received`` counts as silence.
    Silence or an unrelated signal gives a peak near 0.
    """
    s = np.asarray(sent, dtype=float)
    r = np.asarray(received, dtype=float)
    m, n = len(s), len(r)
    if m == 0 or n == 0:
        return Delay(0.0, 0.0, 0.0, 0.0)
    s = s - s.mean()
    r = r - r.mean()
    es = float(np.dot(s, s))
    if es == 0.0:
        return Delay(0.0, 0.0, 0.0, 0.0)

    nfft = 1 << (n + m - 1 - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(r, nfft) * np.conj(np.fft.rfft(s, nfft)), nfft)
    lags = np.arange(-(m - 1), n)
    corr = np.concatenate([full[nfft - (m - 1) :], full[:n]]) if m > 1 else full[:n]

    # energy of the received window r[k : k+m] for every lag, zeros outside r
    padded = np.concatenate([np.zeros(m - 1), r, np.zeros(m - 1)])
    cs = np.concatenate([[0.0], np.cumsum(padded * padded)])
    er = cs[m : m + len(lags)] - cs[: len(lags)]
    er = np.maximum(er, 1e-12 * es)
    ncc = corr / np.sqrt(es * er)

    lo = max(-(m - 1), int(np.ceil(min_lag_s * rate)))
    hi = n - 1 if max_lag_s is None else min(n - 1, int(np.floor(max_lag_s * rate)))
    if hi < lo:
        return Delay(0.0, 0.0, 0.0, 0.0)
    window = slice(lo + (m - 1), hi + (m - 1) + 1)
    idx = window.start + int(np.argmax(ncc[window]))
    peak = float(ncc[idx])
    frac = 0.0
    if window.start < idx < window.stop - 1:
        a, b, c = ncc[idx - 1 : idx + 2]
        denom = a - 2 * b + c
        if denom < 0:
            frac = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    lag = float(lags[idx] + frac)
    gain = float(corr[idx] / es)
    return Delay(lag_samples=lag, lag_ms=1000.0 * lag / rate, peak=min(peak, 1.0), gain=gain)


@dataclass(frozen=True)
class SegmentMatch:
    """Result of ``segmented_match``: the sent audio cut into short windows, each looked for in
    the received audio on its own.

    windows: (start_s, lag_ms, peak) of every window of sent audio that is not silent.
    matched_fraction: share of the audible sent audio covered by windows whose peak reaches
        ``threshold`` (windows overlap, so a delay step inside one window is covered by its
        neighbours).
    window_fraction: share of the windows that matched.
    lag_ms_*: over the matched windows (None when none matched).
    """

    windows: list[tuple[float, float, float]]
    threshold: float
    matched_fraction: float
    window_fraction: float
    median_peak: float
    lag_ms_first: float | None
    lag_ms_min: float | None
    lag_ms_median: float | None
    lag_ms_max: float | None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["windows"] = [[round(a, 3), round(b, 2), round(c, 3)] for a, b, c in self.windows]
        return d


def segmented_match(
    sent: np.ndarray,
    received: np.ndarray,
    rate: int,
    window_s: float = 0.25,
    hop_s: float = 0.05,
    max_lag_s: float = 1.0,
    threshold: float = 0.9,
    silence_dbfs: float = -45.0,
) -> SegmentMatch:
    """Look for each ``window_s`` piece of ``sent`` (every ``hop_s``) in ``received`` separately.

    A real call's delay is not constant: an adaptive jitter buffer grows when
    the host stalls and then sheds the excess in 10 ms steps, so one
    correlation over the whole call can miss an echo that is intact piece by
    piece, and a window holding a step matches only in part. Each window is
    searched at lags 0..``max_lag_s`` after its own position; the result says
    how much of the audible sent audio lies in some window that matched.
    """
    s = np.asarray(sent, dtype=float)
    r = np.asarray(received, dtype=float)
    w = max(1, int(window_s * rate))
    hop = max(1, int(hop_s * rate))
    extra = int(max_lag_s * rate)
    audible = np.zeros(len(s), dtype=bool)
    covered = np.zeros(len(s), dtype=bool)
    windows = []
    for start in range(0, len(s) - w + 1, hop):
        seg = s[start : start + w]
        if rms_dbfs(seg) < silence_dbfs:
            continue
        d = estimate_delay(seg, r[start : start + w + extra], rate, max_lag_s=max_lag_s)
        windows.append((start / rate, d.lag_ms, d.peak))
        audible[start : start + w] = True
        if d.peak >= threshold:
            covered[start : start + w] = True
    matched = [x for x in windows if x[2] >= threshold]
    lags = [x[1] for x in matched]
    return SegmentMatch(
        windows=windows,
        threshold=threshold,
        matched_fraction=float(covered.sum() / audible.sum()) if audible.any() else 0.0,
        window_fraction=len(matched) / len(windows) if windows else 0.0,
        median_peak=float(np.median([x[2] for x in windows])) if windows else 0.0,
        lag_ms_first=lags[0] if lags else None,
        lag_ms_min=min(lags) if lags else None,
        lag_ms_median=float(np.median(lags)) if lags else None,
        lag_ms_max=max(lags) if lags else None,
    )


def ulaw(x: np.ndarray) -> np.ndarray:
    """G.711 μ-law round trip (8-bit companding + quantisation), float in, float out."""
    mu = 255.0
    x = np.clip(np.asarray(x, dtype=float), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round(y * 127) / 127
    return np.sign(q) * (np.power(1 + mu, np.abs(q)) - 1) / mu


def compare(
    sent: np.ndarray, received: np.ndarray, rate: int, max_lag_s: float | None = 2.0, window_threshold: float = 0.9
) -> dict:
    """Everything a test wants to print about one sent/received pair."""
    d = estimate_delay(sent, received, rate, max_lag_s=max_lag_s)
    seg = segmented_match(sent, received, rate, max_lag_s=max_lag_s or 1.0, threshold=window_threshold)
    active = active_segment(received, rate)
    return {
        "sent_dbfs": round(rms_dbfs(sent), 1),
        "received_dbfs": round(rms_dbfs(received), 1),
        "sent_freq_hz": round(dominant_frequency(sent, rate), 1),
        "received_freq_hz": round(dominant_frequency(active if active.size else received, rate), 1),
        "received_s": round(len(received) / rate, 3),
        "delay": d.as_dict(),
        "segments": seg.as_dict(),
    }
