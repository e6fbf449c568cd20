"""A whole call through the Speaqr adapter and the stand-in Speaqr: both directions transformed.

caller tone (440 Hz) -> externalMedia A -> session #1 (en-us>es-es) -> stand-in (+300 Hz)
-> externalMedia B -> callee hears 740 Hz; callee tone (1000 Hz) -> session #2 (es-es>en-us)
-> caller hears 1300 Hz. Neither side hears the other's raw tone.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from ari_fake import FakeChannel
from speaqr_sip.ari.flows import FLOWS
from speaqr_sip.g711 import float_to_int16, pcm_to_ulaw, ulaw_to_pcm
from speaqr_sip.rtp import RtpPacket
from speaqr_sip.testing.dsp import band_energy_ratio, dominant_frequency, tone
from speaqr_sip.testing.fake_speaqr import FakeSpeaqrServer
from test_ari_app import media_of
from test_call_flow import AGI_CALL, CALLER, all_clear, record_of, start

pytestmark = pytest.mark.asyncio


class RecordingSpeaqr(FakeSpeaqrServer):
    """The stand-in, remembering every session's parameters."""

    def __init__(self, **kwargs: Any) -> None:
        self.session_params: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    async def _on_live_connect(self, sid: str, data: Any = None) -> dict[str, Any]:
        ack = await super()._on_live_connect(sid, data)
        if isinstance(data, dict):
            self.session_params.append(dict(data))
        return ack


@pytest_asyncio.fixture
async def speaqr() -> AsyncIterator[tuple[RecordingSpeaqr, str]]:
    server = RecordingSpeaqr(shift_hz=300.0, api_key="k")
    port = await server.start("127.0.0.1", 0)
    yield server, f"http://127.0.0.1:{port}"
    await server.stop()


async def play_and_listen(
    sender: FakeChannel, receiver: FakeChannel, frequency: float, seconds: float = 1.5
) -> np.ndarray[Any, Any]:
    loop = asyncio.get_running_loop()
    assert sender.rtp is not None and sender.external_host is not None
    assert receiver.rtp is not None
    ulaw = pcm_to_ulaw(float_to_int16(tone(frequency, seconds, 8000)))
    received: list[bytes] = []

    async def listen() -> None:
        assert receiver.rtp is not None
        while True:
            received.append(RtpPacket.parse(await loop.sock_recv(receiver.rtp, 2048)).payload)

    listener = asyncio.create_task(listen())
    for seq, offset in enumerate(range(0, len(ulaw), 160)):
        packet = RtpPacket(0, seq, offset, 0x5151, ulaw[offset : offset + 160])
        sender.rtp.sendto(packet.serialize(), sender.external_host)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.6)
    listener.cancel()
    return ulaw_to_pcm(b"".join(received)).astype(np.float64)


async def test_both_directions_go_through_their_own_speaqr_session(
    speaqr: tuple[RecordingSpeaqr, str],
) -> None:
    server, url = speaqr
    run = await start(
        {
            "processor": {"kind": "speaqr", "fallback": "hangup"},
            "speaqr": {"url": url, "api_key": "k", "chunk_ms": 100},
        },
        FLOWS,
    )
    try:
        fake = run.fake
        await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
        await fake.wait_for(lambda: len(fake.creations) == 1, 10)
        leg = fake.leg_ids()[0]
        await fake.wait_for(
            lambda: len(media_of(fake, CALLER)) == 1 and len(media_of(fake, leg)) == 1, 10
        )
        caller_media = media_of(fake, CALLER)[0]
        callee_media = media_of(fake, leg)[0]

        heard_by_callee = await play_and_listen(caller_media, callee_media, 440)
        assert heard_by_callee.size > 40 * 160
        steady = heard_by_callee[800:]
        assert abs(dominant_frequency(steady, 8000) - 740) < 15
        assert band_energy_ratio(steady, 8000, 440) < 0.01

        heard_by_caller = await play_and_listen(callee_media, caller_media, 1000)
        assert heard_by_caller.size > 40 * 160
        steady = heard_by_caller[800:]
        assert abs(dominant_frequency(steady, 8000) - 1300) < 15
        assert band_energy_ratio(steady, 8000, 1000) < 0.01

        languages = sorted(
            (p["languageIdSource"], p["languageIdTarget"]) for p in server.session_params
        )
        assert languages == [("en-us", "es-es"), ("es-es", "en-us")]

        await fake.callee_hangs_up(leg)
        await all_clear(run)
        record = await record_of(run)
        assert (record.sip_status, record.cause, record.processor) == (200, "normal", "speaqr")
        assert run.app.metrics.speaqr_fallbacks == 0
        await fake.wait_for(lambda: not server._sessions, 5)  # both sessions closed
    finally:
        await run.close()
