"""A stall does not turn into lasting delay: the appliance's passthrough drops stale audio.

Real-time input (one 20 ms frame every 20 ms) with a 400 ms gap, after which the held-back
frames arrive in one burst (what a socket buffer delivers when a busy host resumes). With an
unbounded queue the pacer would play the burst one frame per 20 ms and keep 400 ms of delay
for the rest of the call; the bounded passthrough of :func:`create_processor` drops the
oldest frames and is back to real time within a few frames.
"""

import asyncio
import time

import pytest

from speaqr_sip.config import parse_ari_config
from speaqr_sip.processors import create_processor
from speaqr_sip.relay import MediaRelay
from speaqr_sip.rtp import RtpPacket
from test_relay import FRAME, PARAMS, asterisk_socket, no_fallback


@pytest.mark.asyncio
async def test_burst_after_a_stall_is_not_kept_as_delay() -> None:
    processor = create_processor(parse_ari_config({}), "passthrough")
    await processor.start(PARAMS)
    relay = MediaRelay(processor, channel_id="c", on_failure=no_fallback)
    port = await relay.open("127.0.0.1")
    task = asyncio.create_task(relay.run())
    ast = asterisk_socket()
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}
    delays: dict[int, float] = {}

    async def listen() -> None:
        while True:
            packet = RtpPacket.parse(await loop.sock_recv(ast, 2048))
            seq = int.from_bytes(packet.payload[:2], "big")
            delays[seq] = time.monotonic() - sent_at[seq]

    def send(seq: int) -> None:
        payload = seq.to_bytes(2, "big") + b"\xff" * (FRAME - 2)
        sent_at.setdefault(seq, time.monotonic())
        ast.sendto(RtpPacket(0, seq, seq * FRAME, 7, payload).serialize(), ("127.0.0.1", port))

    listener = asyncio.create_task(listen())
    try:
        for seq in range(25):  # 0.5 s of real time
            send(seq)
            await asyncio.sleep(0.02)
        stall_start = time.monotonic()
        for seq in range(25, 45):  # produced during a 400 ms stall...
            sent_at[seq] = stall_start + (seq - 25) * 0.02
        await asyncio.sleep(0.4)
        for seq in range(25, 45):  # ...and delivered at once when it ends
            send(seq)
        for seq in range(45, 95):  # then 1 s of real time again
            send(seq)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        listener.cancel()
        await processor.close()
        await asyncio.wait_for(task, 2)
        await relay.close()
        ast.close()
    late = [delays[s] for s in range(60, 95) if s in delays]
    assert len(late) >= 30, sorted(delays)
    # Back to real time: no frame of the last 0.7 s waits anything like the stall.
    assert max(late) < 0.1, [round(d, 3) for d in late]
    assert relay.stats.sent < 95  # stale frames were dropped, not played late
