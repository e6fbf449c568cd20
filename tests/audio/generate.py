"""Test audio: tones and speech as 8 kHz mono 16-bit PCM WAV files.

Signals are numpy float arrays in [-1.0, 1.0]; files are written with the
standard-library ``wave`` module.  Speech comes from ``espeak-ng`` and is
converted to the telephony format by ``sox`` (both Debian packages).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 8000  # Hz: the PCMU clock rate and the client's conference-bridge rate


def tone(
    freq_hz: float, duration_s: float, rate: int = RATE, amplitude: float = 0.5, fade_s: float = 0.005
) -> np.ndarray:
    """A sine tone; short raised-cosine fades avoid clicks at both ends."""
    n = round(duration_s * rate)
    t = np.arange(n) / rate
    x = amplitude * np.sin(2 * np.pi * freq_hz * t)
    nf = min(int(fade_s * rate), n // 2)
    if nf > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, nf))
        x[:nf] *= ramp
        x[-nf:] *= ramp[::-1]
    return x


def silence(duration_s: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(duration_s * rate))


def tone_bursts(
    freq_hz: float,
    pattern_s: list[float] | tuple[float, ...] = (0.30, 0.10, 0.20, 0.25, 0.40),
    rate: int = RATE,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Alternating tone/silence segments (durations in ``pattern_s``, starting with tone).

    A continuous tone correlates with itself shifted by any whole period, so
    its delay is ambiguous; an irregular on/off envelope makes the
    cross-correlation peak unique while the spectrum stays one tone.
    """
    parts = []
    for i, d in enumerate(pattern_s):
        parts.append(tone(freq_hz, d, rate, amplitude) if i % 2 == 0 else silence(d, rate))
    return np.concatenate(parts)


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767).round().astype("<i2")


def write_wav(path: str | Path, x: np.ndarray, rate: int = RATE) -> Path:
    """Write a float signal as mono 16-bit PCM WAV."""
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(np.asarray(x, dtype=float)).tobytes())
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float in [-1, 1] (first channel) and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples, want 16-bit")
        ch = w.getnchannels()
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if ch > 1:
        data = data.reshape(-1, ch)[:, 0]
    return data.astype(float) / 32768.0, rate


def speech(
    text: str, path: str | Path, rate: int = RATE, voice: str = "en", words_per_minute: int = 150, pad_s: float = 0.2
) -> Path:
    """Speak ``text`` with espeak-ng into an 8 kHz mono 16-bit WAV at ``path``.

    ``pad_s`` of silence is added at both ends (sox ``pad``) so that the
    first syllable is not lost while the media path settles.
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is not installed (Debian package {tool})")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "sox",
                str(raw),
                "-r",
                str(rate),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(path),
                "pad",
                str(pad_s),
                str(pad_s),
            ],
            check=True,
            capture_output=True,
        )
    return path
