"""RTP packets (RFC 3550): parse and serialize, with precise errors for malformed input.

:meth:`RtpPacket.parse` raises :class:`ValueError` naming what is wrong and where;
callers that read from the network (the media relay) catch it, count the packet as
malformed and drop it.
"""

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
HEADER_LENGTH = 12
PAYLOAD_TYPE_PCMU = 0

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension: 16-bit profile id and a body of whole 32-bit words."""

    profile: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"RTP extension profile {self.profile} outside 0..65535")
        if len(self.data) % 4:
            raise ValueError(f"RTP extension body is {len(self.data)} bytes, not a multiple of 4")
        if len(self.data) // 4 > 0xFFFF:
            raise ValueError(f"RTP extension body of {len(self.data)} bytes is too long")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. Padding is stripped on parse and never produced on serialize."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = field(default_factory=tuple)
    extension: RtpExtension | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} outside 0..127")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError(f"RTP sequence number {self.sequence_number} outside 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise ValueError(f"RTP timestamp {self.timestamp} outside 0..2**32-1")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError(f"RTP SSRC {self.ssrc} outside 0..2**32-1")
        if len(self.csrc) > 15:
            raise ValueError(f"RTP packet has {len(self.csrc)} CSRCs, at most 15 allowed")
        for value in self.csrc:
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"RTP CSRC {value} outside 0..2**32-1")

    @classmethod
    def parse(cls, data: bytes) -> "RtpPacket":
        """Parse one datagram; raise ``ValueError`` with a precise message if malformed."""
        size = len(data)
        if size < HEADER_LENGTH:
            raise ValueError(f"RTP packet too short: {size} bytes, header needs {HEADER_LENGTH}")
        first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise ValueError(f"RTP version {version} unsupported, expected {RTP_VERSION}")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        offset = HEADER_LENGTH + 4 * csrc_count
        if size < offset:
            raise ValueError(
                f"RTP packet truncated: {csrc_count} CSRCs need {offset} header bytes, got {size}"
            )
        csrc = struct.unpack_from(f"!{csrc_count}I", data, HEADER_LENGTH)
        extension = None
        if has_extension:
            if size < offset + _EXTENSION_HEADER.size:
                raise ValueError(
                    f"RTP header extension truncated: needs {offset + 4} bytes, got {size}"
                )
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += _EXTENSION_HEADER.size
            end = offset + 4 * words
            if size < end:
                raise ValueError(
                    f"RTP header extension truncated: {words} words need {end} bytes, got {size}"
                )
            extension = RtpExtension(profile, bytes(data[offset:end]))
            offset = end
        end = size
        if has_padding:
            if size == offset:
                raise ValueError("RTP padding bit set but the packet has no payload bytes")
            pad = data[-1]
            if pad == 0:
                raise ValueError("RTP padding length is 0")
            if pad > size - offset:
                raise ValueError(
                    f"RTP padding length {pad} exceeds the {size - offset} bytes after the header"
                )
            end = size - pad
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
        )

    def serialize(self) -> bytes:
        """Encode to wire format (no padding)."""
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXTENSION_HEADER.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        return b"".join(parts)
