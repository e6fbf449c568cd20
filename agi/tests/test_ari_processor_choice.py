"""The per-user processor (``users.processor`` -> ``SPEAQR_PROCESSOR``) chosen for each call."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from ari_fake import FakeAri
from speaqr_sip.config import parse_ari_config
from speaqr_sip.g711 import float_to_int16, pcm_to_ulaw, ulaw_to_pcm
from speaqr_sip.processors import CallProcessorChoice, kind_for_call
from speaqr_sip.rtp import RtpPacket
from speaqr_sip.testing.dsp import band_energy_ratio, dominant_frequency, tone
from speaqr_sip.testing.fake_speaqr import FakeSpeaqrServer
from test_ari_app import AGI_OK, Running, echo_through, media_of, rest_sequence, start_app
from test_ari_app import running as running  # noqa: F401 - the fixture, re-exported

NO_KEY: dict[str, Any] = {"processor": {"kind": "passthrough", "fallback": "passthrough"}}
NO_KEY_HANGUP: dict[str, Any] = {"processor": {"kind": "passthrough", "fallback": "hangup"}}
BOB_SPEAQR = {"SPEAQR_ORIGIN": "bob", "SPEAQR_PROCESSOR": "speaqr"}


def config(sections: dict[str, Any]) -> Any:
    return parse_ari_config({"ari": {"password": "x"}, **sections})


@pytest.mark.parametrize(
    ("sections", "requested", "expected"),
    [
        ({}, "", CallProcessorChoice("passthrough")),
        ({"speaqr": {"api_key": "k"}}, "", CallProcessorChoice("speaqr")),
        ({"speaqr": {"api_key": "k"}}, "passthrough", CallProcessorChoice("passthrough")),
        (
            {"processor": {"kind": "passthrough"}, "speaqr": {"api_key": "k"}},
            "speaqr",
            CallProcessorChoice("speaqr"),
        ),
        ({"processor": {"kind": "passthrough"}}, "bogus", CallProcessorChoice("passthrough")),
    ],
)
def test_kind_for_call(
    sections: dict[str, Any], requested: str, expected: CallProcessorChoice
) -> None:
    assert kind_for_call(config(sections), requested) == expected


def test_speaqr_without_a_key_follows_the_fallback() -> None:
    keep = kind_for_call(config(NO_KEY), "speaqr")
    assert keep.kind == "passthrough" and "no Speaqr API key" in keep.note
    refuse = kind_for_call(config(NO_KEY_HANGUP), "speaqr")
    assert refuse.kind is None and "no Speaqr API key" in refuse.note


@pytest.mark.asyncio
@pytest.mark.app_config(NO_KEY)
async def test_user_asking_for_speaqr_without_a_key_gets_passthrough_and_a_log_line(
    running: Running,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = running.fake
    with caplog.at_level(logging.WARNING):
        await fake.caller_enters_stasis(
            "c-1", ["loopback"], {**AGI_OK, "SPEAQR_PROCESSOR": "speaqr"}
        )
        await fake.wait_for(lambda: len(media_of(fake, "c-1")) == 1)
    echoed = await echo_through(media_of(fake, "c-1")[0], [b"\x11" * 160])
    assert echoed[0].payload == b"\x11" * 160
    assert running.app.metrics.speaqr_fallbacks == 1
    assert any("no Speaqr API key" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
@pytest.mark.app_config(NO_KEY_HANGUP)
async def test_user_asking_for_speaqr_without_a_key_is_refused_when_fallback_is_hangup(
    running: Running,  # noqa: F811
) -> None:
    fake = running.fake
    await fake.caller_enters_stasis("c-2", ["loopback"], {**AGI_OK, **BOB_SPEAQR})
    await fake.wait_for(lambda: "c-2" not in fake.channels)
    assert rest_sequence(fake) == ["DELETE /ari/channels/c-2?reason_code=34"]


@pytest_asyncio.fixture
async def stand_in() -> AsyncIterator[str]:
    server = FakeSpeaqrServer(shift_hz=300.0, api_key="k")
    port = await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await server.stop()


async def _dominant_returned(fake: Any, channel_id: str) -> tuple[float, float]:
    """Send 1.5 s of 440 Hz through the call; the returned audio's dominant frequency and
    the share of its energy still at 440 Hz."""
    loop = asyncio.get_running_loop()
    media = media_of(fake, channel_id)[0]
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
    steady = ulaw_to_pcm(b"".join(received)).astype(np.float64)[800:]
    return dominant_frequency(steady, 8000), band_energy_ratio(steady, 8000, 440)


@pytest.mark.asyncio
async def test_default_passthrough_but_the_users_speaqr_goes_through_speaqr(
    stand_in: str,
) -> None:
    """Configured default passthrough with a key set (the lab): alice (no choice) hears her
    tone unchanged, bob (processor speaqr) hears it shifted by the stand-in."""

    fake = FakeAri()
    url = await fake.start()
    app, stop, task, session = await start_app(
        fake,
        url,
        processor={"kind": "passthrough", "fallback": "passthrough"},
        speaqr={"url": stand_in, "api_key": "k", "chunk_ms": 100},
    )
    try:
        await fake.caller_enters_stasis("c-alice", ["loopback"], AGI_OK)
        await fake.caller_enters_stasis(
            "c-bob", ["loopback"], {**AGI_OK, "SPEAQR_ORIGIN": "bob", "SPEAQR_PROCESSOR": "speaqr"}
        )
        await fake.wait_for(
            lambda: len(media_of(fake, "c-alice")) == len(media_of(fake, "c-bob")) == 1
        )
        alice, bob = await asyncio.gather(
            _dominant_returned(fake, "c-alice"), _dominant_returned(fake, "c-bob")
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await session.close()
        await fake.stop()
    assert abs(alice[0] - 440) < 15 and alice[1] > 0.5, alice
    assert abs(bob[0] - 740) < 15 and bob[1] < 0.01, bob
    assert app.metrics.speaqr_fallbacks == 0
