"""Whole Python path: fake ARI -> app -> relay -> Speaqr adapter -> stand-in Speaqr -> back."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from ari_fake import PASSWORD, USERNAME, FakeAri
from speaqr_sip.ari.app import AriApplication
from speaqr_sip.config import parse_ari_config
from speaqr_sip.g711 import float_to_int16, pcm_to_ulaw, ulaw_to_pcm
from speaqr_sip.rtp import RtpPacket
from speaqr_sip.testing.dsp import band_energy_ratio, dominant_frequency, tone
from speaqr_sip.testing.fake_speaqr import FakeSpeaqrServer
from test_ari_app import AGI_OK, media_of

# Explicit, so the tests run the same under any pytest configuration.
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def speaqr_url() -> AsyncIterator[str]:
    server = FakeSpeaqrServer(shift_hz=300.0, api_key="k")
    port = await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await server.stop()


async def test_tone_comes_back_shifted_through_the_whole_app(speaqr_url: str) -> None:
    fake = FakeAri()
    url = await fake.start()
    config = parse_ari_config(
        {
            "ari": {"url": url, "username": USERNAME, "password": PASSWORD},
            "speaqr": {"url": speaqr_url, "api_key": "k", "chunk_ms": 100},
        }
    )
    session = aiohttp.ClientSession()
    app = AriApplication(config, session)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    loop = asyncio.get_running_loop()
    try:
        await fake.wait_for(lambda: fake.ws_connects == 1)
        await asyncio.wait_for(app.events.connected.wait(), 2)
        await fake.caller_enters_stasis("c-1", ["loopback"], AGI_OK)
        await fake.wait_for(lambda: len(media_of(fake, "c-1")) == 1)
        media = media_of(fake, "c-1")[0]
        assert media.rtp is not None and media.external_host is not None

        ulaw = pcm_to_ulaw(float_to_int16(tone(440, 1.5, 8000)))
        received: list[bytes] = []

        async def listen() -> None:
            assert media.rtp is not None
            while True:
                received.append(RtpPacket.parse(await loop.sock_recv(media.rtp, 2048)).payload)

        listener = asyncio.create_task(listen())
        for seq, start in enumerate(range(0, len(ulaw), 160)):
            packet = RtpPacket(0, seq, start, 0x1234, ulaw[start : start + 160])
            media.rtp.sendto(packet.serialize(), media.external_host)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        listener.cancel()
        assert len(received) > 40
        pcm = ulaw_to_pcm(b"".join(received)).astype(np.float64)
        steady = pcm[800:]
        assert abs(dominant_frequency(steady, 8000) - 740) < 15
        assert band_energy_ratio(steady, 8000, 440) < 0.01
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await session.close()
        await fake.stop()
    assert app.metrics.speaqr_fallbacks == 0
