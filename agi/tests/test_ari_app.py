"""The ARI application against the fake ARI: REST call sequence, media, teardown, recovery."""

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ari_fake import PASSWORD, USERNAME, FakeAri, FakeChannel
from speaqr_sip.ari.app import AriApplication
from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows import FLOWS, Flow
from speaqr_sip.callrecords import MemorySink
from speaqr_sip.config import parse_ari_config
from speaqr_sip.rtp import RtpPacket

# Explicit, so the tests run the same under any pytest configuration.
pytestmark = pytest.mark.asyncio

AGI_OK = {
    "SPEAQR_CHECK": "OK",
    "SPEAQR_CALL_ID": "a84b4c76e66710@pc33.example.com",
    "SPEAQR_SERVICE": "loopback",
    "SPEAQR_EMAIL": "alice@example.com",
    "SPEAQR_ORIGIN": "alice",
    "SPEAQR_DESTINATION": "test",
    "SPEAQR_DIAL": "",
    "SPEAQR_SOURCE_LANGUAGE": "en-us",
    "SPEAQR_TARGET_LANGUAGE": "es-es",
    "SPEAQR_VOICE": "F",
}


@dataclass
class Running:
    fake: FakeAri
    app: AriApplication
    stop: asyncio.Event
    task: asyncio.Task[None]


async def start_app(
    fake: FakeAri, url: str, flows: dict[str, type[Flow]] | None = None, **sections: Any
) -> tuple[AriApplication, asyncio.Event, asyncio.Task[None], aiohttp.ClientSession]:
    data: dict[str, Any] = {
        "ari": {
            "url": url,
            "username": USERNAME,
            "password": PASSWORD,
            "reconnect_initial": 0.05,
            "reconnect_max": 0.2,
            "request_timeout": 2.0,
            "shutdown_timeout": 3.0,
        }
    }
    data.update(sections)
    config = parse_ari_config(data)
    session = aiohttp.ClientSession()
    app = AriApplication(config, session, flows)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await fake.wait_for(lambda: fake.ws_connects >= 1)
    await asyncio.wait_for(app.events.connected.wait(), 2)
    return app, stop, task, session


@pytest_asyncio.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    marker = request.node.get_closest_marker("app_config")
    sections: dict[str, Any] = marker.args[0] if marker else {}
    flows = marker.kwargs.get("flows") if marker else None
    fake = FakeAri()
    url = await fake.start()
    app, stop, task, session = await start_app(fake, url, flows, **sections)
    try:
        yield Running(fake, app, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await session.close()
        await fake.stop()


def rest_sequence(fake: FakeAri) -> list[str]:
    """The non-GET calls in order, with ids normalised."""
    out = []
    for method, path, query in fake.requests:
        if method == "GET":
            continue
        parts = path.split("/")
        normal = "/".join(
            "{media}"
            if p.startswith("speaqr-media-")
            else "{bridge}"
            if p.startswith("speaqr-")
            else p
            for p in parts
        )
        if "channel" in query:
            who = "{media}" if query["channel"].startswith("speaqr-media-") else query["channel"]
            normal += f"?channel={who}"
        if "reason_code" in query:
            normal += f"?reason_code={query['reason_code']}"
        out.append(f"{method} {normal}")
    return out


async def echo_through(media: FakeChannel, payloads: list[bytes]) -> list[RtpPacket]:
    loop = asyncio.get_running_loop()
    assert media.rtp is not None and media.external_host is not None
    for seq, payload in enumerate(payloads):
        packet = RtpPacket(0, seq, seq * 160, 0xDEADBEEF, payload)
        media.rtp.sendto(packet.serialize(), media.external_host)
        # Real time, as Asterisk sends: the appliance's passthrough drops audio that queues
        # up faster than it can be played (stale after a stall), see test_relay_latency.
        await asyncio.sleep(0.02)
    received = []
    async with asyncio.timeout(5):
        while len(received) < len(payloads):
            received.append(RtpPacket.parse(await loop.sock_recv(media.rtp, 2048)))
    return received


def media_of(fake: FakeAri, channel_id: str) -> list[FakeChannel]:
    """Media channels bridged with ``channel_id``."""
    return [
        fake.channels[member]
        for members in fake.bridges.values()
        if channel_id in members
        for member in members
        if member in fake.channels and fake.channels[member].rtp_address is not None
    ]


async def start_loopback_call(fake: FakeAri, channel_id: str = "1700000000.1") -> FakeChannel:
    await fake.caller_enters_stasis(channel_id, ["loopback"], AGI_OK)
    await fake.wait_for(lambda: len(media_of(fake, channel_id)) == 1)
    return media_of(fake, channel_id)[0]


async def test_loopback_call_sequence_media_and_teardown_on_caller_hangup(running: Running) -> None:
    fake = running.fake
    media = await start_loopback_call(fake)
    echoed = await echo_through(media, [bytes([i]) * 160 for i in range(10)])
    assert [p.payload for p in echoed] == [bytes([i]) * 160 for i in range(10)]
    assert {p.ssrc for p in echoed} != {0xDEADBEEF}

    await fake.caller_hangs_up("1700000000.1")
    await fake.wait_for(lambda: not fake.bridges and not fake.media_channels())
    await fake.wait_for(lambda: not running.app.routes)
    assert rest_sequence(fake) == [
        "POST /ari/channels/1700000000.1/answer",
        "POST /ari/bridges",
        "POST /ari/bridges/{bridge}/addChannel?channel=1700000000.1",
        "POST /ari/channels/externalMedia",
        "POST /ari/bridges/{bridge}/addChannel?channel={media}",
        "DELETE /ari/channels/{media}",
        "DELETE /ari/bridges/{bridge}",
    ]
    gets = [
        q.get("variable") for m, p, q in fake.requests if m == "GET" and p.endswith("/variable")
    ]
    assert set(AGI_OK) <= set(gets)


@pytest.mark.parametrize(
    ("by_asterisk", "cause"),
    [(False, "normal"), (True, "asterisk_hangup")],
    ids=["caller", "asterisk"],
)
async def test_the_record_tells_a_caller_hangup_from_asterisk_hanging_up(
    running: Running, by_asterisk: bool, cause: str
) -> None:
    sink = MemorySink()
    running.app.records = sink
    await start_loopback_call(running.fake)
    await running.fake.caller_hangs_up("1700000000.1", by_asterisk=by_asterisk)
    await running.fake.wait_for(lambda: bool(sink.records))
    assert [(r.cause, r.sip_status) for r in sink.records] == [(cause, 200)]


async def test_asterisk_hanging_up_the_media_channel_first_is_recorded_as_asterisk_hangup(
    running: Running,
) -> None:
    sink = MemorySink()
    running.app.records = sink
    media = await start_loopback_call(running.fake)
    await running.fake.emit("ChannelHangupRequest", media.id, cause=4, soft=True)
    await running.fake.wait_for(lambda: bool(sink.records))
    assert [(r.cause, r.sip_status) for r in sink.records] == [("asterisk_hangup", 200)]


async def test_the_media_channel_is_bridged_only_once_it_is_in_stasis(running: Running) -> None:
    running.fake.media_stasis_delay = 0.2  # as Asterisk under load: StasisStart after the POST
    media = await start_loopback_call(running.fake)
    echoed = await echo_through(media, [b"\x07" * 160])
    assert echoed[0].payload == b"\x07" * 160
    assert "POST /ari/bridges/{bridge}/addChannel?channel={media}" in rest_sequence(running.fake)


async def test_media_channel_loss_hangs_up_the_caller(running: Running) -> None:
    fake = running.fake
    media = await start_loopback_call(fake)
    fake.channels.pop(media.id)
    await fake.emit("StasisEnd", media.id, snapshot=media)
    await fake.wait_for(lambda: "1700000000.1" not in fake.channels)
    await fake.wait_for(lambda: not fake.bridges and not running.app.routes)
    assert "DELETE /ari/channels/1700000000.1?reason_code=16" in rest_sequence(fake)


async def test_unchecked_channel_is_refused_with_403_cause(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis("c-raw", ["loopback"], {})
    await fake.wait_for(lambda: "c-raw" not in fake.channels)
    assert rest_sequence(fake) == ["DELETE /ari/channels/c-raw?reason_code=21"]


async def test_unknown_service_is_refused_with_503_cause(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis("c-x", [], AGI_OK)
    await fake.wait_for(lambda: "c-x" not in fake.channels)
    assert rest_sequence(fake) == ["DELETE /ari/channels/c-x?reason_code=34"]


async def test_shutdown_hangs_up_active_calls(running: Running) -> None:
    fake = running.fake
    await start_loopback_call(fake)
    running.stop.set()
    await asyncio.wait_for(running.task, 10)
    assert not fake.channels and not fake.bridges
    assert "DELETE /ari/channels/1700000000.1?reason_code=16" in rest_sequence(fake)


async def test_reconnects_and_drops_calls_whose_channel_vanished(running: Running) -> None:
    fake = running.fake
    sink = MemorySink()
    running.app.records = sink
    await start_loopback_call(fake)
    # Asterisk restarts: the websocket drops and every channel is gone.
    for channel in list(fake.channels.values()):
        if channel.rtp is not None:
            channel.rtp.close()
    fake.channels.clear()
    fake.bridges.clear()
    await fake.drop_websockets()
    await fake.wait_for(lambda: fake.ws_connects >= 2)
    await fake.wait_for(lambda: not running.app.routes)
    await fake.wait_for(lambda: bool(sink.records))
    assert [(r.cause, r.sip_status) for r in sink.records] == [("asterisk_hangup", 200)]
    # New calls work after the reconnection.
    media = await start_loopback_call(fake, "1700000001.2")
    echoed = await echo_through(media, [b"\x05" * 160])
    assert echoed[0].payload == b"\x05" * 160
    assert running.app.metrics.ari_reconnects == 1


class ExplodingFlow(Flow):
    service = "boom"

    async def run(self, ctx: CallContext) -> None:
        raise RuntimeError("bug in a flow")


@pytest.mark.app_config({}, flows={**FLOWS, "boom": ExplodingFlow})
async def test_one_failing_call_does_not_affect_another(running: Running) -> None:
    fake = running.fake
    media = await start_loopback_call(fake)
    await fake.caller_enters_stasis("c-boom", ["boom"], AGI_OK)
    await fake.wait_for(lambda: "c-boom" not in fake.channels)
    echoed = await echo_through(media, [b"\x07" * 160])
    assert echoed[0].payload == b"\x07" * 160
    assert running.app.metrics.calls_failed == 1
    assert "DELETE /ari/channels/c-boom?reason_code=34" in rest_sequence(fake)


@pytest.mark.app_config(
    {
        "processor": {"kind": "speaqr", "fallback": "passthrough", "start_timeout": 2.0},
        "speaqr": {"url": "http://127.0.0.1:9", "connect_timeout": 1.0},
    }
)
async def test_speaqr_down_falls_back_to_passthrough(running: Running) -> None:
    media = await start_loopback_call(running.fake)
    echoed = await echo_through(media, [b"\x09" * 160])
    assert echoed[0].payload == b"\x09" * 160
    assert running.app.metrics.speaqr_fallbacks == 1


@pytest.mark.app_config(
    {
        "processor": {"kind": "speaqr", "fallback": "hangup", "start_timeout": 2.0},
        "speaqr": {"url": "http://127.0.0.1:9", "connect_timeout": 1.0},
    }
)
async def test_speaqr_down_with_hangup_fallback_refuses_before_answer(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis("c-1", ["loopback"], AGI_OK)
    await fake.wait_for(lambda: "c-1" not in fake.channels)
    assert rest_sequence(fake) == ["DELETE /ari/channels/c-1?reason_code=34"]


async def test_caller_hangup_during_setup_leaves_nothing_behind(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis("c-quick", ["loopback"], AGI_OK)
    await fake.caller_hangs_up("c-quick")
    await fake.wait_for(lambda: not running.app.routes)
    await asyncio.sleep(0.1)
    assert not fake.bridges and not fake.media_channels()


# --- the admin endpoint -------------------------------------------------------------------

ADMIN = {"metrics": {"listen": "127.0.0.1:0", "username": "scraper", "password": "scrape-secret"}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def sample(text: str, series: str) -> float:
    """The value of one exposition line (``name{labels}``), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scrape(running: Running, path: str = "/metrics", **kw: Any) -> tuple[int, str]:
    url = f"http://127.0.0.1:{running.app.admin.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, **kw) as r:
        return r.status, await r.text()


@pytest.mark.app_config(ADMIN)
async def test_a_call_moves_the_exposed_counters(running: Running) -> None:
    auth = basic("scraper", "scrape-secret")
    status, before = await scrape(running, headers=auth)
    assert status == 200
    media = await start_loopback_call(running.fake)
    await echo_through(media, [b"\x01" * 160] * 3)
    _, during = await scrape(running, headers=auth)
    assert sample(during, 'speaqr_ari_active_calls{service="loopback"}') == 1
    assert sample(during, 'speaqr_ari_processors_in_use{processor="passthrough"}') == 1
    assert sample(during, 'speaqr_ari_call_setup_seconds_count{service="loopback"}') == 1
    await running.fake.caller_hangs_up("1700000000.1")
    await running.fake.wait_for(lambda: not running.app.routes)
    _, after = await scrape(running, headers=auth)
    assert (
        sample(after, "speaqr_ari_calls_started_total")
        == sample(before, "speaqr_ari_calls_started_total") + 1
    )
    assert sample(after, 'speaqr_ari_active_calls{service="loopback"}') == 0
    assert sample(after, 'speaqr_ari_relay_packets_total{kind="received"}') >= 3
    assert sample(after, "speaqr_ari_ari_connected") == 1
    assert "process_open_fds " in after


@pytest.mark.app_config(ADMIN)
async def test_metrics_need_the_credentials_and_health_does_not(running: Running) -> None:
    assert (await scrape(running))[0] == 401
    assert (await scrape(running, headers=basic("scraper", "wrong")))[0] == 401
    status, body = await scrape(running, "/health/ready")
    assert status == 200 and '"ari": true' in body and '"database": true' in body
    assert (await scrape(running, "/health/live"))[0] == 200


@pytest.mark.app_config(ADMIN)
async def test_not_ready_while_the_ari_websocket_is_down(running: Running) -> None:
    await running.fake.stop()
    await asyncio.sleep(0.3)
    status, body = await scrape(running, "/health/ready")
    assert status == 503 and '"ari": false' in body, body
