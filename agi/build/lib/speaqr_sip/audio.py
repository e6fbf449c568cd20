"""Audio conversions around G.711: WAV chunks up, MP3 down, resampling, 20 ms framing."""

import struct

import miniaudio
import numpy as np
import numpy.typing as npt
import soxr

from speaqr_sip.g711 import pcm_to_ulaw

PCMU_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = PCMU_RATE * FRAME_MS // 1000  # 160 μ-law bytes = 160 samples
ULAW_SILENCE = 0xFF

Pcm = npt.NDArray[np.int16]

_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")


def pcm16_wav(samples: Pcm, rate: int) -> bytes:
    """A complete mono 16-bit PCM WAV file holding ``samples``."""
    data = np.asarray(samples, dtype="<i2").tobytes()
    fmt = _FMT.pack(1, 1, rate, rate * 2, 2, 16)
    return b"".join(
        (
            _RIFF.pack(b"RIFF", 4 + _CHUNK.size + len(fmt) + _CHUNK.size + len(data), b"WAVE"),
            _CHUNK.pack(b"fmt ", len(fmt)),
            fmt,
            _CHUNK.pack(b"data", len(data)),
            data,
        )
    )


def read_pcm16_wav(blob: bytes) -> tuple[Pcm, int]:
    """Parse a mono 16-bit PCM WAV file; raise ``ValueError`` for anything else."""
    if len(blob) < _RIFF.size:
        raise ValueError(f"WAV too short: {len(blob)} bytes")
    riff, _size, wave = _RIFF.unpack_from(blob)
    if riff != b"RIFF" or wave != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    offset = _RIFF.size
    rate = 0
    while offset + _CHUNK.size <= len(blob):
        chunk_id, chunk_size = _CHUNK.unpack_from(blob, offset)
        body = offset + _CHUNK.size
        if chunk_id == b"fmt ":
            if chunk_size < _FMT.size:
                raise ValueError("WAV fmt chunk too short")
            audio_format, channels, rate, _byte_rate, _align, bits = _FMT.unpack_from(blob, body)
            if (audio_format, channels, bits) != (1, 1, 16):
                raise ValueError(
                    f"WAV must be mono 16-bit PCM, got format {audio_format}, "
                    f"{channels} channel(s), {bits} bits"
                )
        elif chunk_id == b"data":
            if rate == 0:
                raise ValueError("WAV data chunk before fmt chunk")
            end = min(body + chunk_size, len(blob))
            usable = (end - body) // 2 * 2
            return np.frombuffer(blob[body : body + usable], dtype="<i2").astype(np.int16), rate
        offset = body + chunk_size + (chunk_size & 1)
    raise ValueError("WAV has no data chunk")


def decode_mp3(blob: bytes) -> tuple[Pcm, int]:
    """Decode an MP3 file to mono int16 at its own sample rate."""
    try:
        decoded = miniaudio.mp3_read_s16(blob)
    except miniaudio.DecodeError as exc:
        raise ValueError(f"MP3 could not be decoded: {exc}") from exc
    samples = np.frombuffer(decoded.samples, dtype=np.int16)
    if decoded.nchannels > 1:
        samples = (
            samples.reshape(-1, decoded.nchannels).astype(np.int32).mean(axis=1).astype(np.int16)
        )
    return samples, int(decoded.sample_rate)


def resample(samples: Pcm, in_rate: int, out_rate: int) -> Pcm:
    """Resample int16 mono audio (one shot, high quality)."""
    if in_rate == out_rate or samples.size == 0:
        return samples
    out: Pcm = soxr.resample(samples, in_rate, out_rate)
    return out


class StreamResampler:
    """Resample a stream chunk by chunk without clicks at the chunk borders."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._passthrough = in_rate == out_rate
        self._stream = (
            None if self._passthrough else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        )

    def process(self, samples: Pcm, *, last: bool = False) -> Pcm:
        if self._stream is None:
            return samples
        out: Pcm = self._stream.resample_chunk(samples, last=last)
        return out


def mp3_to_ulaw_frames(blob: bytes) -> list[bytes]:
    """MP3 (any rate) -> 8 kHz μ-law 20 ms frames; the last frame is padded with silence."""
    samples, rate = decode_mp3(blob)
    return split_frames(pcm_to_ulaw(resample(samples, rate, PCMU_RATE)), pad=True)


def split_frames(ulaw: bytes, *, pad: bool) -> list[bytes]:
    """Cut μ-law audio into 160-byte frames; a short tail is padded or dropped."""
    frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        if pad:
            frames[-1] = frames[-1] + bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(frames[-1]))
        else:
            frames.pop()
    return frames
