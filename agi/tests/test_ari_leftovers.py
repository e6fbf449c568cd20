"""What an earlier run left in Asterisk is ended after connecting; nothing else is."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ari_fake import FakeAri
from speaqr_sip.ari import leftovers
from speaqr_sip.ari.app import AriApplication
from speaqr_sip.ari.leftovers import hangup_cause, is_ours
from test_ari_app import AGI_OK, media_of, start_app, start_loopback_call

SETTLE = 0.3


@pytest.fixture(autouse=True)
def short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leftovers, "SETTLE", SETTLE)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeAri]:
    ari = FakeAri()
    yield ari
    await ari.stop()


@contextlib.asynccontextmanager
async def running_app(fake: FakeAri) -> AsyncIterator[AriApplication]:
    url = await fake.start()
    app, stop, task, session = await start_app(fake, url)
    try:
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await session.close()


def deletes(fake: FakeAri) -> set[str]:
    return {
        f"{path}?reason_code={query['reason_code']}" if "reason_code" in query else path
        for method, path, query in fake.calls("DELETE")
    }


def earlier_run(fake: FakeAri) -> None:
    fake.leave_behind("1699.1", state="Up", app_name="Stasis", app_data="loopback,loopback")
    fake.leave_behind("1699.2", state="Ring", app_name="Stasis", app_data="loopback,call")
    fake.leave_behind("speaqr-media-old", state="Up")
    fake.leave_behind("speaqr-leg-old", state="Ringing")
    fake.bridges["speaqr-oldbridge"] = {"1699.1", "speaqr-media-old"}


def strangers(fake: FakeAri) -> None:
    fake.leave_behind("other.1", state="Up", app_name="Stasis", app_data="otherapp,loopback")
    fake.leave_behind("agi.1", state="Ring", app_name="AGI", app_data="agi://127.0.0.1/check")
    fake.leave_behind("plain.1", state="Up")
    fake.bridges["someone-elses"] = {"other.1"}


def test_our_channels_are_known_by_stasis_app_or_by_name() -> None:
    assert is_ours(
        {"id": "1.1", "dialplan": {"app_name": "Stasis", "app_data": "loopback,call"}}, "loopback"
    )
    assert is_ours({"id": "speaqr-media-ab"}, "loopback")
    assert is_ours({"id": "speaqr-leg-ab"}, "loopback")
    assert not is_ours(
        {"id": "1.1", "dialplan": {"app_name": "Stasis", "app_data": "loopbackx"}}, "loopback"
    )
    assert not is_ours(
        {"id": "1.1", "dialplan": {"app_name": "AGI", "app_data": "loopback"}}, "loopback"
    )
    assert not is_ours({"id": "speaqr-bridge"}, "loopback")


def test_an_unanswered_caller_gets_503_and_an_answered_one_a_bye() -> None:
    assert hangup_cause({"id": "1.1", "state": "Ring"}) == 34
    assert hangup_cause({"id": "1.1", "state": "Ringing"}) == 34
    assert hangup_cause({"id": "1.1", "state": "Up"}) == 16
    assert hangup_cause({"id": "speaqr-leg-x", "state": "Ringing"}) == 16


@pytest.mark.asyncio
async def test_what_an_earlier_run_left_is_ended_after_connecting_and_nothing_else(
    fake: FakeAri,
) -> None:
    earlier_run(fake)
    strangers(fake)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running_app(fake) as app:
        await fake.wait_for(lambda: app.metrics.leftovers_ended == 5)
        elapsed = loop.time() - started
        assert deletes(fake) == {
            "/ari/channels/1699.1?reason_code=16",
            "/ari/channels/1699.2?reason_code=34",
            "/ari/channels/speaqr-media-old?reason_code=16",
            "/ari/channels/speaqr-leg-old?reason_code=16",
            "/ari/bridges/speaqr-oldbridge",
        }
        assert {"other.1", "agi.1", "plain.1"} <= set(fake.channels)
        assert "someone-elses" in fake.bridges
        assert elapsed < leftovers.sweep_limit(app.config.ari.request_timeout)


@pytest.mark.asyncio
async def test_a_caller_whose_stasis_start_arrives_during_the_sweep_is_served(
    fake: FakeAri,
) -> None:
    earlier_run(fake)
    # In Stasis when the channels are listed; its StasisStart reaches us only afterwards.
    fake.leave_behind("1700.9", state="Ring", app_name="Stasis", app_data="loopback,loopback")
    fake.channels["1700.9"].variables = dict(AGI_OK)
    async with running_app(fake) as app:
        await fake.wait_for(
            lambda: fake.calls("GET") and fake.calls("GET")[-1][1] == "/ari/channels"
        )
        await fake.emit("StasisStart", "1700.9", args=["loopback"])
        await fake.wait_for(lambda: "1699.1" not in fake.channels, SETTLE + 5)
        await fake.wait_for(lambda: len(media_of(fake, "1700.9")) == 1)
        assert "1700.9" in fake.channels and "1700.9" in app.routes
        assert not any("1700.9" in d for d in deletes(fake))


@pytest.mark.asyncio
async def test_after_a_reconnect_the_own_call_stays_and_a_stranger_is_ended(
    fake: FakeAri,
) -> None:
    async with running_app(fake) as app:
        await start_loopback_call(fake, "1700.1")
        own_bridges = set(fake.bridges)
        own_media = {c.id for c in fake.media_channels()}
        fake.leave_behind("1699.7", state="Up", app_name="Stasis", app_data="loopback,loopback")
        await fake.drop_websockets()
        await fake.wait_for(lambda: fake.ws_connects >= 2)
        await fake.wait_for(lambda: "1699.7" not in fake.channels, SETTLE + 5)
        await asyncio.sleep(0.1)
        assert deletes(fake) == {"/ari/channels/1699.7?reason_code=16"}
        assert own_bridges <= set(fake.bridges) and own_media <= set(fake.channels)
        assert "1700.1" in app.routes


@pytest.mark.asyncio
async def test_a_failed_listing_is_logged_and_calls_are_still_served(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    fake.list_error = True
    earlier_run(fake)
    async with running_app(fake):
        await fake.wait_for(lambda: any("could not list" in r.getMessage() for r in caplog.records))
        await start_loopback_call(fake, "1700.2")
        assert "1699.1" in fake.channels and not fake.calls("DELETE")
