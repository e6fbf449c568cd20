"""The ``call`` service against the fake ARI and a scripted carrier: routing, causes, limits."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ari_fake import PASSWORD, USERNAME, FakeChannel
from ari_fake_call import CarrierAri
from speaqr_sip.ari.app import AriApplication
from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows import FLOWS, CallFlow, Flow
from speaqr_sip.callrecords import CallRecord, MemorySink
from speaqr_sip.config import parse_ari_config
from speaqr_sip.processors import FrameQueue, Processor, ProcessorError, SessionParams
from speaqr_sip.rtp import RtpPacket
from test_ari_app import AGI_OK, media_of

pytestmark = pytest.mark.asyncio

CALLER = "1700000000.1"
AGI_CALL = {
    **AGI_OK,
    "SPEAQR_SERVICE": "call",
    "SPEAQR_DESTINATION": "+34911234567",
    "SPEAQR_DIAL": "",
}
BASE_SECTIONS: dict[str, Any] = {
    "policy": {
        "allowed_prefixes": ["+34", "+1"],
        "blocked_prefixes": ["+34803"],
        "max_calls_per_user": 1,
        "max_calls_total": 2,
        "max_call_duration": 60,
    },
    "call": {
        "answer_timeout": 2.0,
        "callerid_policy": "fixed",
        "callerid_number": "+34910000000",
    },
}


# --- processors that tag audio per direction -------------------------------------------


class TagProcessor(Processor):
    """Adds ``delta`` to every byte: caller->callee (en-us source) +1, callee->caller +2."""

    name = "tag"
    instances: list["TagProcessor"] = []

    def __init__(self, delta: int) -> None:
        self.delta = delta
        self.queue = FrameQueue(500)
        self.frames_in = 0
        self.closed = False
        TagProcessor.instances.append(self)

    async def start(self, params: SessionParams) -> None:
        return None

    async def process(self, frame: bytes) -> None:
        self.frames_in += 1
        self.queue.put(bytes((b + self.delta) % 256 for b in frame))

    def frames(self) -> Any:
        return aiter(self.queue)

    async def close(self) -> None:
        self.closed = True
        self.queue.close()


class TaggingCallFlow(CallFlow):
    async def open_direction(self, ctx: CallContext, params: SessionParams) -> Processor | None:
        processor = TagProcessor(1 if params.source_language == "en-us" else 2)
        ctx.on_teardown("tag processor", processor.close)
        ctx.record.processor_used(processor.name)
        return processor


TAG_FLOWS: dict[str, type[Flow]] = {**FLOWS, "call": TaggingCallFlow}


# --- running app ------------------------------------------------------------------------


@dataclass
class Running:
    fake: CarrierAri
    app: AriApplication
    sink: MemorySink
    stop: asyncio.Event
    task: asyncio.Task[None]
    session: aiohttp.ClientSession

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.session.close()
        await self.fake.stop()


async def start(sections: dict[str, Any], flows: dict[str, type[Flow]] | None = None) -> Running:
    fake = CarrierAri()
    url = await fake.start()
    data: dict[str, Any] = {
        "ari": {
            "url": url,
            "username": USERNAME,
            "password": PASSWORD,
            "reconnect_initial": 0.05,
            "reconnect_max": 0.2,
            "request_timeout": 2.0,
            "shutdown_timeout": 3.0,
        },
        **BASE_SECTIONS,
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    sink = MemorySink()
    session = aiohttp.ClientSession()
    app = AriApplication(parse_ari_config(data), session, flows, records=sink)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await fake.wait_for(lambda: fake.ws_connects >= 1)
    await asyncio.wait_for(app.events.connected.wait(), 2)
    return Running(fake, app, sink, stop, task, session)


@pytest_asyncio.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    marker = request.node.get_closest_marker("app_config")
    sections: dict[str, Any] = marker.args[0] if marker else {}
    flows = marker.kwargs.get("flows", TAG_FLOWS) if marker else TAG_FLOWS
    TagProcessor.instances.clear()
    run = await start(sections, flows)
    try:
        yield run
    finally:
        await run.close()


def caller_requests(fake: CarrierAri, channel_id: str = CALLER) -> list[str]:
    """Non-GET requests on the caller's channel, with reason codes."""
    out = []
    for method, path, query in fake.requests:
        if method != "GET" and path.startswith(f"/ari/channels/{channel_id}"):
            suffix = f"?reason_code={query['reason_code']}" if "reason_code" in query else ""
            out.append(f"{method} {path.removeprefix('/ari/channels/' + channel_id)}{suffix}")
    return out


async def record_of(run: Running, channel_id: str = CALLER) -> CallRecord:
    await run.fake.wait_for(lambda: any(r.channel_id == channel_id for r in run.sink.records))
    return next(r for r in run.sink.records if r.channel_id == channel_id)


async def all_clear(run: Running) -> None:
    fake = run.fake
    await fake.wait_for(lambda: not fake.channels and not fake.bridges and not run.app.routes)
    await fake.wait_for(lambda: run.app.services.limiter.active() == 0)


async def answered_call(run: Running, variables: dict[str, str] | None = None) -> str:
    """Start a call the carrier answers; return the callee leg id once both legs have media."""
    fake = run.fake
    await fake.caller_enters_stasis(CALLER, ["call"], variables or AGI_CALL)
    await fake.wait_for(lambda: len(fake.creations) == 1)
    leg = fake.leg_ids()[0]
    await fake.wait_for(lambda: len(media_of(fake, CALLER)) == 1 and len(media_of(fake, leg)) == 1)
    return leg


async def send_and_receive(
    sender: FakeChannel, receiver: FakeChannel, payloads: list[bytes]
) -> list[bytes]:
    """RTP into one leg's externalMedia (as Asterisk would), what comes out of the other."""
    loop = asyncio.get_running_loop()
    assert sender.rtp is not None and sender.external_host is not None
    assert receiver.rtp is not None
    for seq, payload in enumerate(payloads):
        sender.rtp.sendto(
            RtpPacket(0, seq, seq * 160, 0xABCD, payload).serialize(), sender.external_host
        )
        await asyncio.sleep(0.005)
    received: list[bytes] = []
    async with asyncio.timeout(5):
        while len(received) < len(payloads):
            received.append(RtpPacket.parse(await loop.sock_recv(receiver.rtp, 2048)).payload)
    return received


# --- answered calls ---------------------------------------------------------------------


async def test_answered_call_cross_routes_each_direction_through_its_own_session(
    running: Running,
) -> None:
    fake = running.fake
    leg = await answered_call(running)
    caller_media = media_of(fake, CALLER)[0]
    callee_media = media_of(fake, leg)[0]

    heard_by_callee = await send_and_receive(caller_media, callee_media, [b"\x10" * 160] * 5)
    assert heard_by_callee == [b"\x11" * 160] * 5  # caller->callee session (+1)
    heard_by_caller = await send_and_receive(callee_media, caller_media, [b"\x20" * 160] * 5)
    assert heard_by_caller == [b"\x22" * 160] * 5  # callee->caller session (+2)

    # Two bridges, each with one leg and one externalMedia channel.
    bridges = sorted(fake.bridges.values(), key=lambda members: CALLER in members, reverse=True)
    assert bridges == [{CALLER, caller_media.id}, {leg, callee_media.id}]

    # The caller was answered only after the callee, and rang while the callee rang.
    calls = caller_requests(fake)
    assert calls == ["POST /ring", "POST /answer"]
    creation = fake.creations[0]
    assert creation["endpoint"] == "PJSIP/+34911234567@carrier"
    assert creation["app"] == "loopback"
    assert creation["appArgs"] == f"call-leg,{CALLER}"
    assert creation["originator"] == CALLER
    assert fake.dials == [(leg, {"timeout": "7"})]  # answer_timeout 2 s + 5 s backstop
    # Asterisk ends the carrier leg itself after the longest call (if we died): 7 + 60 + 120;
    # the carrier sees the fixed caller-ID (From and P-Asserted-Identity: the connected line).
    presented = '"+34910000000" <+34910000000>'
    assert fake.creation_bodies[0] == {
        "variables": {
            "TIMEOUT(absolute)": "187",
            "CALLERID(all)": presented,
            "CONNECTEDLINE(all,i)": presented,
        }
    }

    await fake.caller_hangs_up(CALLER)
    await all_clear(running)
    assert f"DELETE /ari/channels/{leg}" in [f"{m} {p}" for m, p, _q in fake.requests]
    assert all(p.closed for p in TagProcessor.instances) and len(TagProcessor.instances) == 2

    record = await record_of(running)
    assert (record.service, record.sip_status, record.cause) == ("call", 200, "normal")
    assert record.answered_at is not None and record.answered_at <= record.ended_at
    assert (record.username, record.destination, record.dialled_number) == (
        "alice",
        "+34911234567",
        "+34911234567",
    )
    assert record.call_id == AGI_OK["SPEAQR_CALL_ID"]
    assert record.processor == "tag"


async def test_media_is_prepared_while_ringing_and_gated_until_the_answer(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(
        lambda: any(len(m) == 2 for m in fake.bridges.values()) and CALLER in fake.rings
    )
    # The callee leg waits in its bridge (where early media would reach us); the caller is in
    # none: its bridge holds only its externalMedia channel.
    leg = fake.leg_ids()[0]
    assert sorted(len(members) for members in fake.bridges.values()) == [1, 2]
    assert any(leg in members for members in fake.bridges.values())
    assert all(CALLER not in members for members in fake.bridges.values())
    # Audio reaching a media channel before the answer is not processed.
    media = fake.media_channels()[0]
    assert media.rtp is not None and media.external_host is not None
    for seq in range(5):
        media.rtp.sendto(
            RtpPacket(0, seq, seq * 160, 7, b"\x10" * 160).serialize(), media.external_host
        )
    await asyncio.sleep(0.1)
    assert [p.frames_in for p in TagProcessor.instances] == [0, 0]
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)


async def test_only_two_requests_follow_the_answer(running: Running) -> None:
    fake = running.fake
    leg = await answered_call(running)
    sequence = [
        f"{m} {p}" + (f"?channel={q['channel']}" if "channel" in q else "")
        for m, p, q in fake.requests
        if m != "GET"
    ]
    after_answer = sequence[sequence.index(f"POST /ari/channels/{CALLER}/answer") :]
    assert len(after_answer) == 2
    assert after_answer[1].endswith(f"addChannel?channel={CALLER}")
    # The callee leg joined its bridge before the answer, right after it was dialled.
    joined = sequence.index(next(x for x in sequence if x.endswith(f"addChannel?channel={leg}")))
    assert sequence.index(f"POST /ari/channels/{leg}/dial") < joined
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)


async def test_media_that_cannot_be_prepared_is_503_before_the_answer(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    fake.media_error = True
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake)[-1] == "DELETE ?reason_code=34"
    assert "POST /answer" not in caller_requests(fake)
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (503, "unavailable")


async def test_callee_hangup_hangs_up_the_caller(running: Running) -> None:
    fake = running.fake
    leg = await answered_call(running)
    await fake.callee_hangs_up(leg)
    await all_clear(running)
    assert caller_requests(fake)[-1] == "DELETE ?reason_code=16"
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (200, "normal")


async def test_the_row_is_written_open_at_admission_and_at_the_answer_then_finished(
    running: Running,
) -> None:
    fake = running.fake
    leg = await answered_call(running)
    await fake.wait_for(lambda: len(running.sink.progress) == 2)
    admitted, answered = running.sink.progress
    assert (admitted.username, admitted.answered_at, admitted.ended_at) == ("alice", None, None)
    assert admitted.cause == answered.cause == "in_progress"
    assert answered.answered_at is not None and answered.dialled_number == "+34911234567"
    await fake.callee_hangs_up(leg)
    record = await record_of(running)
    assert record.attempt_id == admitted.attempt_id == answered.attempt_id
    assert record.ended_at is not None and record.cause == "normal"


async def test_a_call_refused_before_admission_writes_no_open_row(running: Running) -> None:
    await running.fake.caller_enters_stasis(CALLER, ["call"], {})
    assert (await record_of(running)).cause == "unchecked"
    assert running.sink.progress == []


async def test_callee_gone_while_ari_was_disconnected_ends_the_call(running: Running) -> None:
    fake = running.fake
    leg = await answered_call(running)
    callee = fake.channels.pop(leg)  # hung up while the websocket was down: no events
    assert callee.state == "Up"
    await fake.drop_websockets()
    await fake.wait_for(lambda: fake.ws_connects >= 2)
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake)[-1] == "DELETE ?reason_code=16"
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (200, "normal")


@pytest.mark.app_config({"policy": {"max_call_duration": 1}})
async def test_max_duration_hangs_up_both_legs(running: Running) -> None:
    fake = running.fake
    loop = asyncio.get_running_loop()
    leg = await answered_call(running)
    answered = loop.time()
    await fake.wait_for(lambda: CALLER not in fake.channels and leg not in fake.channels, 5)
    assert 0.7 < loop.time() - answered < 2.0
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (200, "max_duration")


async def test_x_dial_is_dialled_and_x_destination_recorded(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis(CALLER, ["call"], {**AGI_CALL, "SPEAQR_DIAL": "+14155550100"})
    await fake.wait_for(lambda: len(fake.creations) == 1)
    assert fake.creations[0]["endpoint"] == "PJSIP/+14155550100@carrier"
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)
    record = await record_of(running)
    assert (record.destination, record.dialled_number) == ("+34911234567", "+14155550100")


@pytest.mark.app_config(
    {
        "call": {
            "number_format": "national",
            "national_country_code": "34",
            "trunk_endpoint_template": "PJSIP/{number}@other-trunk",
            "callerid_policy": "username",
            "callerid_name": "Speaqr",
            "ringback": "immediate",
        }
    }
)
async def test_number_format_caller_id_and_immediate_ringback(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: len(fake.rings) == 1)
    assert fake.creations[0]["endpoint"] == "PJSIP/911234567@other-trunk"
    assert fake.creation_bodies[0]["variables"]["CALLERID(all)"] == '"Speaqr" <alice>'
    await asyncio.sleep(0.1)  # the callee's Ringing does not ring the caller twice
    assert fake.rings == [CALLER]
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)


# --- early media ------------------------------------------------------------------------


async def test_early_media_reaches_the_caller_and_the_refusal_after_it_too(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.outcome = "fail"
    fake.carrier.cause = 1  # 404 after the announcement
    fake.carrier.progress_after = 0.01
    fake.carrier.answer_after = 1.0
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER in fake.progresses)
    await fake.wait_for(lambda: any(CALLER in m for m in fake.bridges.values()))
    leg = fake.leg_ids()[0]
    caller_media, callee_media = media_of(fake, CALLER)[0], media_of(fake, leg)[0]
    # The announcement reaches the caller through the callee->caller session (+2) ...
    heard = await send_and_receive(callee_media, caller_media, [b"\x20" * 160] * 3)
    assert heard == [b"\x22" * 160] * 3
    # ... and nothing of the caller goes out before an answer.
    assert caller_media.rtp is not None and caller_media.external_host is not None
    caller_media.rtp.sendto(
        RtpPacket(0, 1, 160, 7, b"\x10" * 160).serialize(), caller_media.external_host
    )
    await asyncio.sleep(0.1)
    assert [p.frames_in for p in TagProcessor.instances if p.delta == 1] == [0]

    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake) == ["POST /ring", "POST /progress", "DELETE ?reason_code=1"]
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause, record.answered_at) == (404, "not_found", None)


async def test_an_answer_after_early_media_keeps_the_caller_where_it_is(running: Running) -> None:
    fake = running.fake
    fake.carrier.progress_after = 0.01
    fake.carrier.answer_after = 0.5  # the announcement lasts until the media is ready
    leg = await answered_call(running)
    await fake.wait_for(lambda: "POST /answer" in caller_requests(fake))
    assert caller_requests(fake) == ["POST /ring", "POST /progress", "POST /answer"]
    joins = [q.get("channel") for m, p, q in fake.requests if p.endswith("/addChannel")]
    assert joins.count(CALLER) == 1 and joins.count(leg) == 1
    heard_by_callee = await send_and_receive(
        media_of(fake, CALLER)[0], media_of(fake, leg)[0], [b"\x10" * 160] * 3
    )
    assert heard_by_callee == [b"\x11" * 160] * 3
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)


async def test_a_progress_asterisk_refuses_leaves_the_call_to_ring_and_answer(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.progress_after = 0.01
    fake.progress_error = True  # an Asterisk before 22.9 has no /progress: 404
    leg = await answered_call(running)
    await fake.wait_for(lambda: "POST /answer" in caller_requests(fake))
    heard_by_caller = await send_and_receive(
        media_of(fake, leg)[0], media_of(fake, CALLER)[0], [b"\x20" * 160] * 3
    )
    assert heard_by_caller == [b"\x22" * 160] * 3
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (200, "normal")


# --- failures before answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "caller_cause", "status", "text"),
    [
        (17, 17, 486, "busy"),
        (19, 19, 480, "no_answer"),
        (18, 19, 480, "no_answer"),
        (21, 21, 403, "rejected"),
        (1, 1, 404, "not_found"),
        (28, 28, 484, "invalid_number"),
        (34, 34, 503, "unavailable"),
        (38, 34, 503, "unavailable"),
        (41, 34, 503, "unavailable"),
        (42, 34, 503, "unavailable"),
        (127, 34, 503, "unavailable"),
    ],
)
async def test_callee_failure_maps_to_the_caller_before_answer(
    running: Running, cause: int, caller_cause: int, status: int, text: str
) -> None:
    fake = running.fake
    fake.carrier.outcome = "fail"
    fake.carrier.cause = cause
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels)
    # Rang, never answered, hung up with the cause that chan_pjsip turns into ``status``.
    assert caller_requests(fake) == ["POST /ring", f"DELETE ?reason_code={caller_cause}"]
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause, record.answered_at) == (status, text, None)
    assert record.processor == "tag"


async def test_cause_only_in_channel_destroyed_is_used(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "fail"
    fake.carrier.cause = 17
    fake.carrier.request_cause = 0  # ChannelHangupRequest without a cause
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake)[-1] == "DELETE ?reason_code=17"


@pytest.mark.app_config({"call": {"answer_timeout": 0.5}})
async def test_no_answer_within_the_timeout_is_480_and_cancels_the_callee(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels, 5)
    assert 0.45 < loop.time() - started < 1.5
    leg = fake.leg_ids()[0]
    await fake.wait_for(lambda: leg not in fake.channels)
    assert f"DELETE /ari/channels/{leg}" in [f"{m} {p}" for m, p, _q in fake.requests]
    assert caller_requests(fake) == ["POST /ring", "DELETE ?reason_code=19"]
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (480, "no_answer")


@pytest.mark.parametrize("refused", ["http_error", "dial_error"], ids=["create", "dial"])
async def test_a_leg_asterisk_will_not_create_or_dial_is_503(running: Running, refused) -> None:
    fake = running.fake
    fake.carrier.outcome = refused
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake) == ["DELETE ?reason_code=34"]
    await all_clear(running)  # a leg created but not dialled is hung up too
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (503, "unavailable")


@pytest.mark.app_config({"call": {"answer_timeout": 10.0}})
async def test_a_dial_asterisk_never_starts_is_503_within_the_request_timeout(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.outcome = "dial_silent"
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels, 5)
    assert loop.time() - started < 2.0 + 1.0  # [ari] request_timeout, not the answer timeout
    assert caller_requests(fake) == ["DELETE ?reason_code=34"]
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (503, "unavailable")


async def test_caller_hangup_while_ringing_cancels_the_callee(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER in fake.rings)
    leg = fake.leg_ids()[0]
    await fake.caller_hangs_up(CALLER)
    await fake.wait_for(lambda: leg not in fake.channels)
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (487, "caller_cancelled")
    assert "POST /answer" not in caller_requests(fake)


async def test_caller_hangup_during_the_originate_request_still_cancels_the_leg(
    running: Running,
) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    fake.carrier.create_delay = 0.3
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: len(fake.creations) == 1)
    await fake.caller_hangs_up(CALLER)
    leg = fake.leg_ids()[0]
    await fake.wait_for(lambda: leg in fake.created_legs)
    await all_clear(running)  # the leg is gone too: hung up after Asterisk created it
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (487, "caller_cancelled")


# --- refusals before dialling --------------------------------------------------------------


@pytest.mark.parametrize(
    "variables",
    [
        {"SPEAQR_DESTINATION": "911234567"},
        {"SPEAQR_DIAL": "+1 415 555"},
        {"SPEAQR_DESTINATION": "+0123456789"},
    ],
)
async def test_malformed_number_is_484_without_dialling(
    running: Running, variables: dict[str, str]
) -> None:
    fake = running.fake
    await fake.caller_enters_stasis(CALLER, ["call"], {**AGI_CALL, **variables})
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake) == ["DELETE ?reason_code=28"]
    assert not fake.creations
    record = await record_of(running)
    assert (record.sip_status, record.cause, record.dialled_number) == (484, "invalid_number", "")


@pytest.mark.parametrize("number", ["+447700900123", "+34803123456"])
async def test_destination_outside_the_policy_is_403_without_dialling(
    running: Running, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = running.fake
    with caplog.at_level(logging.WARNING):
        await fake.caller_enters_stasis(CALLER, ["call"], {**AGI_CALL, "SPEAQR_DIAL": number})
        await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake) == ["DELETE ?reason_code=21"]
    assert not fake.creations
    assert f'call_id="{AGI_OK["SPEAQR_CALL_ID"]}"' in caplog.text and "policy" in caplog.text
    record = await record_of(running)
    assert (record.sip_status, record.cause, record.processor) == (403, "policy", None)


async def test_per_user_limit_refuses_the_second_call_with_403(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis("c-first", ["call"], AGI_CALL)
    await fake.wait_for(lambda: len(fake.creations) == 1)
    second = {**AGI_CALL, "SPEAQR_CALL_ID": "second@client"}
    with caplog.at_level(logging.WARNING):
        await fake.caller_enters_stasis("c-second", ["call"], second)
        await fake.wait_for(lambda: "c-second" not in fake.channels)
    assert caller_requests(fake, "c-second") == ["DELETE ?reason_code=21"]
    assert len(fake.creations) == 1
    assert 'call_id="second@client"' in caplog.text and "user_limit" in caplog.text
    record = await record_of(running, "c-second")
    assert (record.sip_status, record.cause) == (403, "policy")

    # Another user may call meanwhile; the slot comes back when the first call ends.
    await fake.caller_enters_stasis("c-bob", ["call"], {**AGI_CALL, "SPEAQR_ORIGIN": "bob"})
    await fake.wait_for(lambda: len(fake.creations) == 2)
    await fake.caller_hangs_up("c-first")
    await fake.wait_for(lambda: running.app.services.limiter.active("alice") == 0)
    await fake.caller_enters_stasis("c-third", ["call"], AGI_CALL)
    await fake.wait_for(lambda: len(fake.creations) == 3)
    for channel_id in ("c-bob", "c-third"):
        await fake.caller_hangs_up(channel_id)
    await all_clear(running)


@pytest.mark.app_config({"policy": {"max_calls_per_user": 5, "max_calls_total": 2}})
async def test_total_limit_refuses_with_403(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    for i, user in enumerate(["alice", "bob", "carol"]):
        await fake.caller_enters_stasis(f"c-{i}", ["call"], {**AGI_CALL, "SPEAQR_ORIGIN": user})
    await fake.wait_for(lambda: "c-2" not in fake.channels)
    assert caller_requests(fake, "c-2") == ["DELETE ?reason_code=21"]
    assert len(fake.creations) == 2
    for i in range(2):
        await fake.caller_hangs_up(f"c-{i}")
    await all_clear(running)


async def test_refusals_free_no_slot_they_did_not_take(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis(CALLER, ["call"], {**AGI_CALL, "SPEAQR_DIAL": "+447700900123"})
    await all_clear(running)
    assert running.app.services.limiter.active() == 0


# --- processors ----------------------------------------------------------------------------


class FailingTagProcessor(TagProcessor):
    """Fails after a few frames (the caller->callee direction only)."""

    async def process(self, frame: bytes) -> None:
        await super().process(frame)
        if self.delta == 1 and self.frames_in == 3:
            self.queue.fail(ProcessorError("speaqr went away"))


class FailingCallFlow(CallFlow):
    async def open_direction(self, ctx: CallContext, params: SessionParams) -> Processor | None:
        processor = FailingTagProcessor(1 if params.source_language == "en-us" else 2)
        ctx.on_teardown("tag processor", processor.close)
        ctx.record.processor_used("speaqr")
        return processor


@pytest.mark.app_config(
    {"processor": {"fallback": "hangup"}}, flows={**FLOWS, "call": FailingCallFlow}
)
async def test_processor_failure_with_hangup_fallback_ends_both_legs(running: Running) -> None:
    fake = running.fake
    leg = await answered_call(running)
    caller_media = media_of(fake, CALLER)[0]
    assert caller_media.rtp is not None and caller_media.external_host is not None
    for seq in range(5):
        packet = RtpPacket(0, seq, seq * 160, 1, b"\x10" * 160)
        caller_media.rtp.sendto(packet.serialize(), caller_media.external_host)
    await fake.wait_for(lambda: CALLER not in fake.channels and leg not in fake.channels)
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (200, "processor_failed")


@pytest.mark.app_config(
    {"processor": {"fallback": "passthrough"}}, flows={**FLOWS, "call": FailingCallFlow}
)
async def test_processor_failure_with_passthrough_fallback_keeps_the_call(
    running: Running,
) -> None:
    fake = running.fake
    leg = await answered_call(running)
    caller_media = media_of(fake, CALLER)[0]
    callee_media = media_of(fake, leg)[0]
    assert caller_media.rtp is not None and caller_media.external_host is not None
    for seq in range(3):
        packet = RtpPacket(0, seq, seq * 160, 1, b"\x10" * 160)
        caller_media.rtp.sendto(packet.serialize(), caller_media.external_host)
    await fake.wait_for(lambda: running.app.metrics.speaqr_fallbacks == 1)
    # The failed direction now passes audio through unchanged; the other is untouched.
    await asyncio.sleep(0.1)
    while True:  # what the failed session had produced before failing may still arrive
        try:
            callee_media.rtp.recv(2048)  # type: ignore[union-attr]
        except BlockingIOError:
            break
    after = await send_and_receive(caller_media, callee_media, [b"\x30" * 160] * 3)
    assert after == [b"\x30" * 160] * 3
    back = await send_and_receive(callee_media, caller_media, [b"\x20" * 160] * 3)
    assert back == [b"\x22" * 160] * 3
    assert running.app.metrics.speaqr_fallbacks == 1
    assert leg in fake.channels and CALLER in fake.channels
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)
    record = await record_of(running)
    assert (record.cause, record.processor) == ("normal", "speaqr")


@pytest.mark.app_config(
    {
        "processor": {"kind": "speaqr", "fallback": "hangup", "start_timeout": 2.0},
        "speaqr": {"url": "http://127.0.0.1:9", "connect_timeout": 1.0},
    },
    flows=FLOWS,
)
async def test_speaqr_down_with_hangup_fallback_is_503_before_dialling(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER not in fake.channels, 5)
    assert caller_requests(fake) == ["DELETE ?reason_code=34"]
    assert not fake.creations
    await all_clear(running)
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (503, "processor_failed")


@pytest.mark.app_config({}, flows=FLOWS)
async def test_passthrough_call_end_to_end(running: Running) -> None:
    fake = running.fake
    leg = await answered_call(running)
    caller_media = media_of(fake, CALLER)[0]
    callee_media = media_of(fake, leg)[0]
    assert await send_and_receive(caller_media, callee_media, [b"\x41" * 160]) == [b"\x41" * 160]
    assert await send_and_receive(callee_media, caller_media, [b"\x42" * 160]) == [b"\x42" * 160]
    await fake.callee_hangs_up(leg)
    await all_clear(running)
    assert (await record_of(running)).processor == "passthrough"


# --- other services and stray legs -----------------------------------------------------


@pytest.mark.app_config({}, flows=FLOWS)
async def test_loopback_calls_are_recorded_too(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis(CALLER, ["loopback"], AGI_OK)
    await fake.wait_for(lambda: len(media_of(fake, CALLER)) == 1)
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)
    record = await record_of(running)
    assert (record.service, record.sip_status, record.cause) == ("loopback", 200, "normal")
    assert (record.destination, record.dialled_number, record.processor) == (
        "test",
        "",
        "passthrough",
    )


@pytest.mark.app_config({}, flows=FLOWS)
async def test_loopback_caller_hangup_while_asterisk_creates_the_media_channel(
    running: Running,
) -> None:
    fake = running.fake
    fake.media_delay = 0.3
    await fake.caller_enters_stasis(CALLER, ["loopback"], AGI_OK)
    await fake.wait_for(lambda: fake.media_requests == 1)
    await fake.caller_hangs_up(CALLER)
    await all_clear(running)  # the externalMedia channel created after the hangup is gone too
    assert any(m == "DELETE" and "speaqr-media-" in p for m, p, _q in fake.requests)


async def test_unchecked_call_is_recorded_as_unchecked(running: Running) -> None:
    fake = running.fake
    await fake.caller_enters_stasis(CALLER, ["call"], {})
    await fake.wait_for(lambda: CALLER not in fake.channels)
    assert caller_requests(fake) == ["DELETE ?reason_code=21"]
    record = await record_of(running)
    assert (record.sip_status, record.cause) == (403, "unchecked")


async def test_stray_callee_leg_is_hung_up_without_a_record(running: Running) -> None:
    fake = running.fake
    fake.channels["speaqr-leg-x"] = FakeChannel("speaqr-leg-x", state="Up")
    await fake.emit("StasisStart", "speaqr-leg-x", args=["call-leg", "gone.1"])
    await fake.wait_for(lambda: "speaqr-leg-x" not in fake.channels)
    await all_clear(running)
    await asyncio.sleep(0.05)
    assert running.sink.records == []


async def test_shutdown_during_ringing_refuses_the_caller_with_503(running: Running) -> None:
    fake = running.fake
    fake.carrier.outcome = "ring_forever"
    await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
    await fake.wait_for(lambda: CALLER in fake.rings)
    running.stop.set()
    await asyncio.wait_for(running.task, 10)
    assert caller_requests(fake)[-1] == "DELETE ?reason_code=34"
    assert not fake.channels and not fake.bridges
    assert [(r.sip_status, r.cause) for r in running.sink.records] == [(503, "shutdown")]


@pytest.mark.app_config(
    {"policy": {"max_calls_total": 100, "max_calls_per_user": 100}, "call": {"answer_timeout": 60}}
)
async def test_fifty_calls_with_mixed_outcomes_leave_nothing_behind(running: Running) -> None:
    fake = running.fake
    answered: list[str] = []
    ringing: list[str] = []
    kinds = ["busy", "rejected", "http_error", "answer", "cancel"]
    for i in range(50):
        channel_id = f"c-{i}"
        kind = kinds[i % len(kinds)]
        fake.carrier.outcome = {
            "busy": "fail",
            "rejected": "fail",
            "http_error": "http_error",
            "answer": "answer",
            "cancel": "ring_forever",
        }[kind]  # type: ignore[assignment]
        fake.carrier.cause = 17 if kind == "busy" else 21
        await fake.caller_enters_stasis(channel_id, ["call"], AGI_CALL)
        if kind == "answer":
            await fake.wait_for(lambda cid=channel_id: len(media_of(fake, cid)) == 1)  # type: ignore[misc]
            answered.append(channel_id)
        elif kind == "cancel":
            await fake.wait_for(lambda cid=channel_id: cid in fake.rings)  # type: ignore[misc]
            ringing.append(channel_id)
        else:
            await fake.wait_for(lambda cid=channel_id: cid not in fake.channels)  # type: ignore[misc]
    assert len(answered) == len(ringing) == 10
    for channel_id in ringing:
        await fake.caller_hangs_up(channel_id)
    for number, channel_id in enumerate(answered):
        if number % 2:
            await fake.caller_hangs_up(channel_id)
        else:
            leg = next(o["channelId"] for o in fake.creations if o["originator"] == channel_id)
            await fake.callee_hangs_up(leg)
    await all_clear(running)
    await fake.wait_for(lambda: len(running.sink.records) == 50)
    causes = sorted(r.cause for r in running.sink.records)
    assert causes == sorted(
        ["busy"] * 10
        + ["rejected"] * 10
        + ["unavailable"] * 10
        + ["normal"] * 10
        + ["caller_cancelled"] * 10
    )
    assert not running.app.routes and not fake.media_channels()
    # Two processor sessions per call, every one closed.
    assert len(TagProcessor.instances) == 100 and all(p.closed for p in TagProcessor.instances)
