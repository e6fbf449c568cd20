"""Per-call UDP media relay between Asterisk's externalMedia channel and a processor.

Asterisk sends the caller's audio as RTP/PCMU to our ephemeral 127.0.0.1 port; the relay
feeds each payload to the processor and sends the processor's frames back to the address
Asterisk sends from, re-packetised with our own SSRC, sequence numbers and timestamps
(:mod:`speaqr_sip.pacing`). Malformed or foreign packets are dropped and counted, never
fatal. A processor failure is handed to ``on_failure``, which may return a replacement
processor (fallback to passthrough) or ``None`` (the relay stops and the call ends).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from speaqr_sip.pacing import Pacer, RtpRewriter
from speaqr_sip.processors.base import Processor, ProcessorError
from speaqr_sip.rtp import PAYLOAD_TYPE_PCMU, RtpPacket

logger = logging.getLogger(__name__)

Address = tuple[str, int]
FailureHandler = Callable[[ProcessorError], Awaitable[Processor | None]]


@dataclass
class RelayStats:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    foreign: int = 0
    other_payload_type: int = 0
    inbound_dropped: int = 0
    unsent_no_peer: int = 0

    def as_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


class MediaRelay(asyncio.DatagramProtocol):
    def __init__(
        self,
        processor: Processor,
        *,
        channel_id: str,
        on_failure: FailureHandler,
        inbound_queue_frames: int = 50,
        rewriter: RtpRewriter | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.processor = processor
        self.stats = RelayStats()
        self._channel = channel_id
        self._on_failure = on_failure
        self._inbound: asyncio.Queue[bytes] = asyncio.Queue(max(1, inbound_queue_frames))
        self._rewriter = rewriter or RtpRewriter()
        self._pacer = pacer or Pacer()
        self._transport: asyncio.DatagramTransport | None = None
        self._peer: Address | None = None
        self._peer_learned = False
        self._closed = False
        self._malformed_logged = False

    # --- socket -----------------------------------------------------------------------

    async def open(self, host: str) -> int:
        """Bind an ephemeral UDP port on ``host``; return the port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self._transport = transport
        port: int = transport.get_extra_info("sockname")[1]
        return port

    def peer_hint(self, host: str, port: int) -> None:
        """Where Asterisk listens (UNICASTRTP_LOCAL_*): send there until its first packet."""
        if not self._peer_learned:
            self._peer = (host, port)

    @property
    def peer(self) -> Address | None:
        return self._peer

    @property
    def ssrc(self) -> int:
        return self._rewriter.ssrc

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = (str(addr[0]), int(addr[1]))
        if not self._peer_learned:
            # The first packet fixes the peer; later packets from elsewhere are foreign.
            if self._peer is not None and self._peer != source:
                logger.info("channel=%s RTP comes from %s:%d", self._channel, *source)
            self._peer = source
            self._peer_learned = True
        elif source != self._peer:
            self.stats.foreign += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError as exc:
            self.stats.malformed += 1
            if not self._malformed_logged:
                self._malformed_logged = True
                logger.warning("channel=%s dropping malformed RTP: %s", self._channel, exc)
            return
        if packet.payload_type != PAYLOAD_TYPE_PCMU:
            self.stats.other_payload_type += 1
            return
        self.stats.received += 1
        try:
            self._inbound.put_nowait(packet.payload)
        except asyncio.QueueFull:
            self.stats.inbound_dropped += 1

    def error_received(self, exc: Exception) -> None:
        logger.debug("channel=%s UDP error: %s", self._channel, exc)

    # --- pumping ----------------------------------------------------------------------

    async def run(self) -> ProcessorError | None:
        """Relay until the processor's output ends; return the failure that ended it, if any."""
        pump = asyncio.create_task(self._pump(), name=f"relay-in-{self._channel}")
        try:
            return await self._send_loop()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self) -> None:
        while True:
            payload = await self._inbound.get()
            try:
                await self.processor.process(payload)
            except ProcessorError:
                # Failures surface through processor.frames(), where they are handled.
                continue

    async def _send_loop(self) -> ProcessorError | None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                async for frame in self.processor.frames():
                    send_at = self._pacer.send_time(loop.time(), len(frame))
                    delay = send_at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self._send(frame, send_at)
                return None
            except ProcessorError as exc:
                replacement = await self._on_failure(exc)
                if replacement is None:
                    return exc
                self.processor = replacement
        return None

    def _send(self, frame: bytes, send_at: float) -> None:
        if self._transport is None or self._peer is None:
            self.stats.unsent_no_peer += 1
            return
        packet = self._rewriter.packet(frame, send_at)
        self._transport.sendto(packet.serialize(), self._peer)
        self.stats.sent += 1

    async def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()
            self._transport = None
