"""RtpPacket parse/serialize, including malformed input."""

import struct

import pytest

from speaqr_sip.rtp import RtpExtension, RtpPacket

# A PCMU packet as Asterisk's externalMedia sends it: V=2, PT=0, seq 4660, ts 0x01020304.
CAPTURED = bytes.fromhex("80001234010203040a0b0c0d") + b"\xff" * 160


def test_parse_captured_packet() -> None:
    packet = RtpPacket.parse(CAPTURED)
    assert packet.payload_type == 0
    assert packet.sequence_number == 0x1234
    assert packet.timestamp == 0x01020304
    assert packet.ssrc == 0x0A0B0C0D
    assert packet.marker is False
    assert packet.payload == b"\xff" * 160
    assert packet.serialize() == CAPTURED


def test_round_trip_with_marker_csrc_and_extension() -> None:
    packet = RtpPacket(
        payload_type=96,
        sequence_number=65535,
        timestamp=2**32 - 1,
        ssrc=1,
        payload=b"abc",
        marker=True,
        csrc=(7, 8),
        extension=RtpExtension(0xBEDE, b"\x01\x02\x03\x04"),
    )
    assert RtpPacket.parse(packet.serialize()) == packet


def test_padding_is_stripped() -> None:
    data = bytes.fromhex("a00000010000000200000003") + b"pay" + b"\x00\x00\x03"
    packet = RtpPacket.parse(data)
    assert packet.payload == b"pay"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short: 0 bytes"),
        (b"\x80\x00\x00", "too short: 3 bytes"),
        (bytes.fromhex("40001234010203040a0b0c0d"), "version 1 unsupported"),
        (bytes.fromhex("00001234010203040a0b0c0d"), "version 0 unsupported"),
        (bytes.fromhex("83001234010203040a0b0c0d") + b"\x00" * 8, "3 CSRCs need 24"),
        (bytes.fromhex("90001234010203040a0b0c0d") + b"\xbe", "extension truncated: needs 16"),
        (
            bytes.fromhex("90001234010203040a0b0c0d") + struct.pack("!HH", 0xBEDE, 2) + b"\x00" * 4,
            "2 words need 24 bytes, got 20",
        ),
        (bytes.fromhex("a0001234010203040a0b0c0d"), "no payload bytes"),
        (bytes.fromhex("a0001234010203040a0b0c0d") + b"ab\x00", "padding length is 0"),
        (bytes.fromhex("a0001234010203040a0b0c0d") + b"ab\x09", "padding length 9 exceeds the 3"),
    ],
)
def test_malformed_packets_raise_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="RTP") as info:
        RtpPacket.parse(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload_type": 128}, "payload type 128"),
        ({"sequence_number": 65536}, "sequence number 65536"),
        ({"timestamp": -1}, "timestamp -1"),
        ({"ssrc": 2**32}, "SSRC 4294967296"),
        ({"csrc": tuple(range(16))}, "16 CSRCs"),
    ],
)
def test_out_of_range_fields_raise(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 0}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        RtpPacket(**base)  # type: ignore[arg-type]


def test_extension_body_must_be_whole_words() -> None:
    with pytest.raises(ValueError, match="not a multiple of 4"):
        RtpExtension(1, b"abc")
