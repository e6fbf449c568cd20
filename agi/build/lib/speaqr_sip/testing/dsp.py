"""Signal helpers for the stand-in server and for audio assertions in tests.

* :class:`FrequencyShifter` -- single-sideband shift by +N Hz (Hilbert FIR + quadrature
  mixing), streaming and phase-continuous across chunks, so a 440 Hz tone comes back at
  440 + N Hz and the original 440 Hz is gone.
* :func:`dominant_frequency` / :func:`band_energy_ratio` -- what a test measures.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

HILBERT_TAPS = 127


def _hilbert_fir(taps: int) -> FloatArray:
    half = taps // 2
    n = np.arange(-half, half + 1)
    h = np.zeros(taps)
    odd = n % 2 != 0
    h[odd] = 2.0 / (np.pi * n[odd])
    return h * np.blackman(taps)


class FrequencyShifter:
    """Shift every frequency of a mono stream up by ``shift_hz`` (upper sideband)."""

    def __init__(self, shift_hz: float, rate: int, taps: int = HILBERT_TAPS) -> None:
        self._h = _hilbert_fir(taps)
        self._delay = taps // 2
        self._history = np.zeros(taps - 1)
        self._step = 2.0 * np.pi * shift_hz / rate
        self._n = 0

    def process(self, samples: npt.ArrayLike) -> FloatArray:
        x = np.asarray(samples, dtype=np.float64)
        buf = np.concatenate((self._history, x))
        quadrature = np.convolve(buf, self._h, mode="valid")
        in_phase = buf[self._delay : self._delay + x.size]
        phase = self._step * (self._n + np.arange(x.size))
        self._n += x.size
        self._history = buf[-(self._h.size - 1) :]
        out: FloatArray = in_phase * np.cos(phase) - quadrature * np.sin(phase)
        return out


def spectrum(samples: npt.ArrayLike, rate: int) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    return freqs, power


def dominant_frequency(samples: npt.ArrayLike, rate: int) -> float:
    """The frequency (Hz) of the strongest spectral peak."""
    freqs, power = spectrum(samples, rate)
    return float(freqs[int(np.argmax(power))])


def band_energy_ratio(
    samples: npt.ArrayLike, rate: int, center: float, width: float = 40.0
) -> float:
    """Share of the total energy within ``center`` ± ``width`` Hz."""
    freqs, power = spectrum(samples, rate)
    total = float(power.sum())
    if total == 0.0:
        return 0.0
    band = (freqs >= center - width) & (freqs <= center + width)
    return float(power[band].sum()) / total


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> FloatArray:
    t = np.arange(int(seconds * rate)) / rate
    out: FloatArray = amplitude * np.sin(2.0 * np.pi * freq * t)
    return out
