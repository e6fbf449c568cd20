"""G.711 μ-law <-> 16-bit linear PCM with numpy lookup tables (no ``audioop``).

The tables follow the ITU-T G.711 segment encoding (bias 0x84, clip 32635), the same
conversion Asterisk's ulaw codec performs, so audio round-trips bit-exactly for every
μ-law code except the duplicate zero 0x7F (negative zero), which encodes back as 0xFF.
"""

import numpy as np
import numpy.typing as npt

_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    exponent = np.floor(np.log2(np.maximum(magnitude >> 7, 1))).astype(np.int32)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    table: npt.NDArray[np.uint8] = codes.astype(np.uint8)
    return table


_DECODE = _build_decode_table()
# Indexed by (sample + 32768).
_ENCODE = _build_encode_table()


def ulaw_to_pcm(data: bytes) -> npt.NDArray[np.int16]:
    """Decode μ-law bytes to int16 samples (one sample per byte)."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm_to_ulaw(samples: npt.ArrayLike) -> bytes:
    """Encode int16 samples (anything castable to int16) to μ-law bytes."""
    pcm = np.asarray(samples, dtype=np.int16).astype(np.int32)
    return _ENCODE[pcm + 32768].tobytes()


def float_to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Convert float audio in [-1, 1] to int16, clipping out-of-range values."""
    scaled = np.clip(np.asarray(samples, dtype=np.float64) * 32767.0, -32768, 32767)
    return np.round(scaled).astype(np.int16)
