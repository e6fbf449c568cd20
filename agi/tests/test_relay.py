"""RTP rewriting, pacing, and the UDP relay with a passthrough processor on localhost."""

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from speaqr_sip.pacing import Pacer, RtpRewriter
from speaqr_sip.processors import PassthroughProcessor, Processor, ProcessorError, SessionParams
from speaqr_sip.relay import MediaRelay
from speaqr_sip.rtp import RtpPacket

FRAME = 160


def test_rewriter_sequence_timestamp_ssrc() -> None:
    rewriter = RtpRewriter(ssrc=0x1234, sequence=65534, timestamp=2**32 - 160)
    packets = [rewriter.packet(bytes([i]) * FRAME, send_at=i * 0.02) for i in range(4)]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160, 320]
    assert {p.ssrc for p in packets} == {0x1234}
    assert [p.marker for p in packets] == [True, False, False, False]
    assert [p.payload_type for p in packets] == [0, 0, 0, 0]


def test_rewriter_jumps_timestamp_and_marks_after_silence() -> None:
    rewriter = RtpRewriter(ssrc=1, sequence=10, timestamp=1000)
    first = rewriter.packet(b"\xff" * FRAME, send_at=0.0)
    # Next frame 1 s later: 0.98 s of silence = 7840 samples.
    second = rewriter.packet(b"\xff" * FRAME, send_at=1.0)
    assert first.timestamp == 1000
    assert second.timestamp == 1000 + FRAME + 7840
    assert second.sequence_number == first.sequence_number + 1
    assert second.marker


def test_rewriter_tolerates_small_jitter() -> None:
    rewriter = RtpRewriter(ssrc=1, sequence=0, timestamp=0)
    times = [0.0, 0.021, 0.045, 0.06, 0.083]
    packets = [rewriter.packet(b"\xff" * FRAME, send_at=t) for t in times]
    assert [p.timestamp for p in packets] == [0, 160, 320, 480, 640]
    assert [p.marker for p in packets] == [True, False, False, False, False]


def test_pacer_spreads_a_burst_and_does_not_catch_up_after_idle() -> None:
    pacer = Pacer(tolerance=0.04)
    burst = [pacer.send_time(0.0, FRAME) for _ in range(5)]
    assert burst == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    later = [pacer.send_time(10.0, FRAME) for _ in range(5)]
    # After idling, at most tolerance/frame frames go out immediately, then 20 ms spacing.
    assert later == pytest.approx([10.0, 10.0, 10.0, 10.02, 10.04])


# --- UDP relay on localhost -------------------------------------------------------------

PARAMS = SessionParams("chan-1", "a@b.c", "alice", "test", "en-us", "es-es", "F")


class FailingProcessor(Processor):
    name = "failing"

    async def start(self, params: SessionParams) -> None:
        return None

    async def process(self, frame: bytes) -> None:
        return None

    async def frames(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        raise ProcessorError("remote gone")
        yield b""  # pragma: no cover

    async def close(self) -> None:
        return None


async def no_fallback(exc: ProcessorError) -> Processor | None:
    return None


def asterisk_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, count: int, limit_s: float = 5.0) -> list[RtpPacket]:
    loop = asyncio.get_running_loop()
    packets = []
    async with asyncio.timeout(limit_s):
        while len(packets) < count:
            data = await loop.sock_recv(sock, 2048)
            packets.append(RtpPacket.parse(data))
    return packets


@pytest.mark.asyncio
async def test_relay_echoes_with_rewritten_headers_and_drops_bad_packets() -> None:
    processor = PassthroughProcessor()
    await processor.start(PARAMS)
    relay = MediaRelay(processor, channel_id="chan-1", on_failure=no_fallback)
    port = await relay.open("127.0.0.1")
    task = asyncio.create_task(relay.run())
    ast = asterisk_socket()
    stranger = asterisk_socket()
    try:
        count = 25
        for i in range(count):
            packet = RtpPacket(0, 1000 + i, 5000 + i * FRAME, 0xA5A5A5A5, bytes([i]) * FRAME)
            ast.sendto(packet.serialize(), ("127.0.0.1", port))
            if i == 3:
                ast.sendto(b"\x80\x00garbage", ("127.0.0.1", port))  # malformed
                stranger.sendto(packet.serialize(), ("127.0.0.1", port))  # foreign source
                ast.sendto(RtpPacket(13, 1, 1, 1, b"\x00").serialize(), ("127.0.0.1", port))
            await asyncio.sleep(0.005)
        echoed = await receive(ast, count)
    finally:
        await processor.close()
        await asyncio.wait_for(task, 2)
        await relay.close()
        ast.close()
        stranger.close()
    assert [p.payload for p in echoed] == [bytes([i]) * FRAME for i in range(count)]
    assert {p.ssrc for p in echoed} == {relay.ssrc}
    assert relay.ssrc != 0xA5A5A5A5
    seqs = [p.sequence_number for p in echoed]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    stamps = [p.timestamp for p in echoed]
    assert all((b - a) & 0xFFFFFFFF >= FRAME for a, b in zip(stamps, stamps[1:], strict=False))
    assert relay.stats.malformed == 1
    assert relay.stats.foreign == 1
    assert relay.stats.other_payload_type == 1
    assert relay.stats.received == count
    assert relay.stats.sent == count


@pytest.mark.asyncio
async def test_relay_sends_to_the_hint_until_asterisk_speaks_then_locks() -> None:
    processor = PassthroughProcessor()
    relay = MediaRelay(processor, channel_id="c", on_failure=no_fallback)
    port = await relay.open("127.0.0.1")
    task = asyncio.create_task(relay.run())
    ast = asterisk_socket()
    other = asterisk_socket()
    try:
        relay.peer_hint("127.0.0.1", ast.getsockname()[1])
        await processor.process(b"\x02" * FRAME)  # processor output before any inbound RTP
        assert (await receive(ast, 1))[0].payload == b"\x02" * FRAME
        ast.sendto(RtpPacket(0, 1, 1, 1, b"\x03" * FRAME).serialize(), ("127.0.0.1", port))
        assert (await receive(ast, 1))[0].payload == b"\x03" * FRAME
        other.sendto(RtpPacket(0, 2, 2, 2, b"\xff" * FRAME).serialize(), ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert relay.stats.foreign == 1 and relay.stats.received == 1
    finally:
        await processor.close()
        await asyncio.wait_for(task, 2)
        await relay.close()
        ast.close()
        other.close()


@pytest.mark.asyncio
async def test_relay_falls_back_to_a_replacement_processor() -> None:
    replacement = PassthroughProcessor()
    calls: list[str] = []

    async def fallback(exc: ProcessorError) -> Processor | None:
        calls.append(str(exc))
        return replacement

    relay = MediaRelay(FailingProcessor(), channel_id="c", on_failure=fallback)
    port = await relay.open("127.0.0.1")
    task = asyncio.create_task(relay.run())
    ast = asterisk_socket()
    try:
        await asyncio.sleep(0.01)
        ast.sendto(RtpPacket(0, 1, 1, 1, b"\x01" * FRAME).serialize(), ("127.0.0.1", port))
        echoed = await receive(ast, 1)
    finally:
        await replacement.close()
        assert await asyncio.wait_for(task, 2) is None
        await relay.close()
        ast.close()
    assert calls == ["remote gone"]
    assert echoed[0].payload == b"\x01" * FRAME


@pytest.mark.asyncio
async def test_relay_without_fallback_returns_the_failure() -> None:
    relay = MediaRelay(FailingProcessor(), channel_id="c", on_failure=no_fallback)
    await relay.open("127.0.0.1")
    result = await asyncio.wait_for(relay.run(), 2)
    await relay.close()
    assert isinstance(result, ProcessorError)
