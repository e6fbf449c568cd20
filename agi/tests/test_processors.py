"""Processors: passthrough identity, the frame queue, and the Speaqr adapter vs the stand-in."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
import pytest_asyncio

from speaqr_sip.audio import FRAME_BYTES, mp3_to_ulaw_frames, pcm16_wav, read_pcm16_wav
from speaqr_sip.config import parse_ari_config
from speaqr_sip.g711 import float_to_int16, pcm_to_ulaw, ulaw_to_pcm
from speaqr_sip.processors import (
    FrameQueue,
    PassthroughProcessor,
    ProcessorError,
    SessionParams,
    create_processor,
    selected_kind,
)
from speaqr_sip.processors.speaqr import SpeaqrProcessor
from speaqr_sip.testing.dsp import band_energy_ratio, dominant_frequency, tone
from speaqr_sip.testing.fake_speaqr import FakeSpeaqrServer, encode_mp3

PARAMS = SessionParams(
    channel_id="chan-1",
    email="alice@example.com",
    origin="alice",
    destination="test",
    source_language="en-us",
    target_language="es-es",
    voice="F",
)


def tone_frames(freq: float, seconds: float) -> list[bytes]:
    ulaw = pcm_to_ulaw(float_to_int16(tone(freq, seconds, 8000)))
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


@pytest.mark.asyncio
async def test_passthrough_is_identity() -> None:
    proc = PassthroughProcessor()
    await proc.start(PARAMS)
    sent = tone_frames(440, 0.2)
    for frame in sent:
        await proc.process(frame)
    await proc.close()
    received = [frame async for frame in proc.frames()]
    assert received == sent


@pytest.mark.asyncio
async def test_frame_queue_drops_oldest_and_fails_loudly() -> None:
    queue = FrameQueue(2)
    for frame in (b"a", b"b", b"c"):
        queue.put(frame)
    assert queue.dropped == 1
    iterator = aiter(queue)
    assert await anext(iterator) == b"b"
    queue.fail(ProcessorError("boom"))
    with pytest.raises(ProcessorError, match="boom"):
        await anext(iterator)


def test_ulaw_round_trip_of_a_tone() -> None:
    pcm = float_to_int16(tone(440, 0.1, 8000))
    back = ulaw_to_pcm(pcm_to_ulaw(pcm)).astype(np.int32)
    assert np.max(np.abs(back - pcm)) <= np.max(np.abs(pcm)) // 16 + 8


def test_wav_round_trip() -> None:
    pcm = float_to_int16(tone(440, 0.1, 8000))
    back, rate = read_pcm16_wav(pcm16_wav(pcm, 8000))
    assert rate == 8000 and np.array_equal(back, pcm)


def test_mp3_down_path_resamples_to_8k_frames() -> None:
    mp3 = encode_mp3(float_to_int16(tone(1000, 1.0, 24000)), 24000)
    frames = mp3_to_ulaw_frames(mp3)
    assert all(len(f) == FRAME_BYTES for f in frames)
    pcm = ulaw_to_pcm(b"".join(frames))
    assert 0.95 <= pcm.size / 8000 <= 1.2
    assert abs(dominant_frequency(pcm, 8000) - 1000) < 10


def test_selection_rule() -> None:
    assert selected_kind(parse_ari_config({})) == "passthrough"
    assert selected_kind(parse_ari_config({"speaqr": {"api_key": "k"}})) == "speaqr"
    assert (
        selected_kind(
            parse_ari_config({"processor": {"kind": "passthrough"}, "speaqr": {"api_key": "k"}})
        )
        == "passthrough"
    )
    assert isinstance(create_processor(parse_ari_config({})), PassthroughProcessor)


# --- the adapter against the stand-in server on localhost ------------------------------


@pytest_asyncio.fixture
async def fake_speaqr() -> AsyncIterator[tuple[FakeSpeaqrServer, str]]:
    server = FakeSpeaqrServer(shift_hz=300.0, api_key="secret", reject_languages=("xx",))
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


def speaqr_config(url: str, **speaqr: object) -> SpeaqrProcessor:
    values: dict[str, object] = {"url": url, "api_key": "secret", "connect_timeout": 3.0}
    values.update(speaqr)
    config = parse_ari_config({"speaqr": values})
    return SpeaqrProcessor(config.speaqr, max_backlog_ms=config.media.max_backlog_ms)


async def collect(proc: SpeaqrProcessor, count: int, limit_s: float) -> list[bytes]:
    out: list[bytes] = []

    async def gather() -> None:
        async for frame in proc.frames():
            out.append(frame)
            if len(out) >= count:
                return

    await asyncio.wait_for(gather(), limit_s)
    return out


async def feed_realtime(proc: SpeaqrProcessor, frames: list[bytes]) -> None:
    for frame in frames:
        await proc.process(frame)
        await asyncio.sleep(0.001)


@pytest.mark.parametrize(
    ("auth_style", "upload_mode", "upload_rate"),
    [("header", "send_audio", 8000), ("token", "stream", 16000)],
)
@pytest.mark.asyncio
async def test_speaqr_adapter_gets_shifted_tone_back(
    fake_speaqr: tuple[FakeSpeaqrServer, str], auth_style: str, upload_mode: str, upload_rate: int
) -> None:
    server, url = fake_speaqr
    proc = speaqr_config(
        url, auth_style=auth_style, upload_mode=upload_mode, upload_sample_rate=upload_rate
    )
    await proc.start(PARAMS)
    try:
        sent = tone_frames(440, 1.0)
        feeder = asyncio.create_task(feed_realtime(proc, sent))
        received = await collect(proc, 40, limit_s=10)
        await feeder
    finally:
        await proc.close()
    pcm = ulaw_to_pcm(b"".join(received))
    # Skip the MP3 encoder delay at the start of each utterance.
    steady = pcm[400:]
    assert abs(dominant_frequency(steady, 8000) - 740) < 15
    assert band_energy_ratio(steady, 8000, 440) < 0.01
    assert server.stats.last_params["languageIdSource"] == "en-us"
    assert server.stats.last_params["email"] == "alice@example.com"
    assert server.stats.chunks >= 4


@pytest.mark.asyncio
async def test_speaqr_bad_key_fails_start(fake_speaqr: tuple[FakeSpeaqrServer, str]) -> None:
    server, url = fake_speaqr
    proc = speaqr_config(url, api_key="wrong")
    with pytest.raises(ProcessorError, match="cannot connect"):
        await proc.start(PARAMS)
    await proc.close()
    assert server.stats.refused_connections == 1


@pytest.mark.asyncio
async def test_speaqr_unsupported_language_fails_start(
    fake_speaqr: tuple[FakeSpeaqrServer, str],
) -> None:
    _server, url = fake_speaqr
    proc = speaqr_config(url)
    bad = replace(PARAMS, source_language="xx")
    with pytest.raises(ProcessorError, match="source_language_not_supported"):
        await proc.start(bad)
    await proc.close()


@pytest.mark.asyncio
async def test_speaqr_unreachable_fails_fast() -> None:
    proc = speaqr_config("http://127.0.0.1:9", connect_timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProcessorError):
        await proc.start(PARAMS)
    await proc.close()
    assert loop.time() - started < 3.0


@pytest.mark.asyncio
async def test_speaqr_error_midway_fails_the_frame_stream() -> None:
    server = FakeSpeaqrServer(error_after_chunks=1)
    port = await server.start("127.0.0.1", 0)
    proc = speaqr_config(f"http://127.0.0.1:{port}", api_key="")
    try:
        await proc.start(PARAMS)
        feeder = asyncio.create_task(feed_realtime(proc, tone_frames(440, 1.0)))
        with pytest.raises(ProcessorError, match="processing_failed"):
            await collect(proc, 10_000, limit_s=10)
        await feeder
    finally:
        await proc.close()
        await server.stop()


@pytest.mark.asyncio
async def test_speaqr_that_stops_acknowledging_audio_fails_within_the_stall_timeout() -> None:
    server = FakeSpeaqrServer(stall_after_chunks=2)
    port = await server.start("127.0.0.1", 0)
    proc = speaqr_config(f"http://127.0.0.1:{port}", api_key="", stall_timeout=0.3)
    try:
        await proc.start(PARAMS)
        feeder = asyncio.create_task(feed_realtime(proc, tone_frames(440, 2.0)))
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProcessorError, match="within 0.3 s"):
            await collect(proc, 10_000, limit_s=10)
        # 2 chunks of 200 ms answered, the third unanswered for 0.3 s.
        assert asyncio.get_running_loop().time() - started < 1.5
        await feeder
    finally:
        await proc.close()
        await server.stop()
