"""μ-law tables against known G.711 values."""

import numpy as np

from speaqr_sip.g711 import float_to_int16, pcm_to_ulaw, ulaw_to_pcm


def test_known_values() -> None:
    assert pcm_to_ulaw([0, -1, 32767, -32768]) == bytes([0xFF, 0x7F, 0x80, 0x00])
    assert ulaw_to_pcm(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]


def test_every_code_round_trips_except_negative_zero() -> None:
    codes = bytes(range(256))
    back = pcm_to_ulaw(ulaw_to_pcm(codes))
    assert [i for i in range(256) if back[i] != codes[i]] == [0x7F]


def test_encoding_is_monotonic_in_magnitude() -> None:
    pcm = np.arange(0, 32768, 7, dtype=np.int32)
    decoded = ulaw_to_pcm(pcm_to_ulaw(pcm)).astype(np.int32)
    assert np.all(np.diff(decoded) >= 0)
    # Quantisation error of G.711 stays within half a step (< 1/16 of the value + bias).
    assert np.all(np.abs(decoded - pcm) <= pcm // 16 + 8)


def test_float_conversion_clips() -> None:
    assert float_to_int16([0.0, 1.0, -1.0, 2.0, -2.0]).tolist() == [0, 32767, -32767, 32767, -32768]
