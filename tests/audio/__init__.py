"""Test audio for the SIP tests: generation (tones, espeak-ng speech) and analysis."""

from tests.audio.analysis import (
    Delay,
    SegmentMatch,
    active_segment,
    band_energy_ratio,
    compare,
    dominant_frequency,
    estimate_delay,
    is_silent,
    rms_dbfs,
    segmented_match,
    ulaw,
)
from tests.audio.generate import (
    RATE,
    read_wav,
    silence,
    speech,
    tone,
    tone_bursts,
    write_wav,
)

__all__ = [
    "RATE",
    "Delay",
    "SegmentMatch",
    "active_segment",
    "band_energy_ratio",
    "compare",
    "dominant_frequency",
    "estimate_delay",
    "is_silent",
    "read_wav",
    "rms_dbfs",
    "segmented_match",
    "silence",
    "speech",
    "tone",
    "tone_bursts",
    "ulaw",
    "write_wav",
]
