"""CPU cost of the media relay: N concurrent passthrough calls at 50 packets/s each.

Python-only and localhost-only: one asyncio loop plays "Asterisk" for N externalMedia
streams (a UDP socket per call sending 160-byte PCMU frames every 20 ms) against N
MediaRelay instances with the passthrough processor, for a fixed duration, and reports
the process CPU time per call and the echo delivery ratio.

    .venv/bin/python benchmarks/relay_load.py [--calls 20 40 80] [--seconds 5]

Writes benchmarks/out/relay_load.json and logs a summary.
"""

import argparse
import asyncio
import json
import logging
import socket
import sys
import time
from pathlib import Path

from speaqr_sip.processors import PassthroughProcessor, Processor, ProcessorError
from speaqr_sip.relay import MediaRelay
from speaqr_sip.rtp import RtpPacket

logger = logging.getLogger("benchmarks.relay_load")
OUT = Path(__file__).resolve().parent / "out" / "relay_load.json"
FRAME = b"\xff" * 160


async def no_fallback(exc: ProcessorError) -> Processor | None:
    return None


async def run(calls: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    relays: list[MediaRelay] = []
    sockets: list[tuple[socket.socket, int]] = []
    for _ in range(calls):
        relay = MediaRelay(PassthroughProcessor(), channel_id="bench", on_failure=no_fallback)
        port = await relay.open("127.0.0.1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        relays.append(relay)
        sockets.append((sock, port))
    tasks = [asyncio.create_task(r.run()) for r in relays]
    received = 0

    def on_readable(sock: socket.socket) -> None:
        nonlocal received
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                return
            received += 1

    for sock, _ in sockets:
        loop.add_reader(sock.fileno(), on_readable, sock)

    sent = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ticks = int(seconds / 0.02)
    for tick in range(ticks):
        for seq_sock, port in sockets:
            packet = RtpPacket(0, tick & 0xFFFF, tick * 160, 1, FRAME).serialize()
            seq_sock.sendto(packet, ("127.0.0.1", port))
            sent += 1
        await asyncio.sleep(max(0.0, wall0 + (tick + 1) * 0.02 - time.perf_counter()))
    await asyncio.sleep(0.2)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0

    for sock, _ in sockets:
        loop.remove_reader(sock.fileno())
        sock.close()
    for relay in relays:
        await relay.processor.close()
    await asyncio.gather(*tasks)
    for relay in relays:
        await relay.close()
    return {
        "calls": calls,
        "seconds": round(wall, 2),
        "cpu_percent_of_one_core": round(100.0 * cpu / wall, 1),
        "cpu_ms_per_call_second": round(1000.0 * cpu / wall / calls, 3),
        "delivered_ratio": round(received / sent, 4) if sent else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = [asyncio.run(run(n, args.seconds)) for n in args.calls]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))
    for row in results:
        logger.info("%s", row)
    logger.info("written %s", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
