"""The loopback service's own abuse limits ([policy.loopback]): slots per user and in total,
refused with 403 before answering, released at teardown, and the duration cap."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from test_ari_app import AGI_OK, start_loopback_call
from test_call_flow import Running, caller_requests, record_of, start

pytestmark = pytest.mark.asyncio

CALL_ID = AGI_OK["SPEAQR_CALL_ID"]


@pytest_asyncio.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    marker = request.node.get_closest_marker("loopback_limits")
    limits: dict[str, Any] = marker.args[0] if marker else {}
    run = await start({"policy": {"loopback": limits}})
    try:
        yield run
    finally:
        await run.close()


def loopback_active(run: Running, username: str | None = None) -> int:
    return run.app.services.limiters["loopback"].active(username)


@pytest.mark.loopback_limits({"max_calls_per_user": 1})
async def test_a_second_loopback_call_of_the_same_user_is_refused_403_with_the_call_id_logged(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    fake = running.fake
    await start_loopback_call(fake, "c-1")
    with caplog.at_level(logging.WARNING):
        await fake.caller_enters_stasis("c-2", ["loopback"], AGI_OK)
        await fake.wait_for(lambda: "c-2" not in fake.channels)
    assert caller_requests(fake, "c-2") == ["DELETE ?reason_code=21"]  # 403, never answered
    record = await record_of(running, "c-2")
    assert (record.sip_status, record.cause) == (403, "policy")
    lines = [r.getMessage() for r in caplog.records if "refused by policy" in r.getMessage()]
    assert len(lines) == 1
    assert f"call_id={CALL_ID}" in lines[0] or f'call_id="{CALL_ID}"' in lines[0]
    assert "user_limit" in lines[0] and "caller gets 403" in lines[0]
    # Another user is not held back by alice's limit.
    await fake.caller_enters_stasis("c-bob", ["loopback"], {**AGI_OK, "SPEAQR_ORIGIN": "bob"})
    await fake.wait_for(lambda: loopback_active(running) == 2)
    assert loopback_active(running, "alice") == 1 and "c-bob" in fake.channels


@pytest.mark.loopback_limits({"max_calls_per_user": 5, "max_calls_total": 2})
async def test_the_loopback_total_limit_refuses_the_third_user_with_403(running: Running) -> None:
    fake = running.fake
    for i, user in enumerate(["alice", "bob"]):
        await fake.caller_enters_stasis(f"c-{i}", ["loopback"], {**AGI_OK, "SPEAQR_ORIGIN": user})
    await fake.wait_for(lambda: loopback_active(running) == 2)
    await fake.caller_enters_stasis("c-2", ["loopback"], {**AGI_OK, "SPEAQR_ORIGIN": "carol"})
    await fake.wait_for(lambda: "c-2" not in fake.channels)
    assert caller_requests(fake, "c-2") == ["DELETE ?reason_code=21"]
    record = await record_of(running, "c-2")
    assert (record.sip_status, record.cause) == (403, "policy")


@pytest.mark.loopback_limits({"max_calls_per_user": 1})
async def test_a_loopback_slot_is_released_at_teardown_and_taken_again(running: Running) -> None:
    fake = running.fake
    await start_loopback_call(fake, "c-1")
    assert loopback_active(running, "alice") == 1
    await fake.caller_hangs_up("c-1")
    await fake.wait_for(lambda: loopback_active(running) == 0)
    await start_loopback_call(fake, "c-2")
    assert loopback_active(running, "alice") == 1


async def test_loopback_calls_never_take_a_slot_of_the_call_service(running: Running) -> None:
    await start_loopback_call(running.fake, "c-1")
    assert loopback_active(running) == 1
    assert running.app.services.limiter.active() == 0


@pytest.mark.loopback_limits({"max_call_duration": 1})
async def test_a_loopback_call_past_its_maximum_duration_is_hung_up_with_normal_clearing(
    running: Running,
) -> None:
    fake = running.fake
    loop = asyncio.get_running_loop()
    await start_loopback_call(fake, "c-1")
    answered = loop.time()
    await fake.wait_for(lambda: "c-1" not in fake.channels, 5)
    assert 0.5 < loop.time() - answered < 2.0
    assert "DELETE ?reason_code=16" in caller_requests(fake, "c-1")
    record = await record_of(running, "c-1")
    assert (record.sip_status, record.cause) == (200, "max_duration")
    await fake.wait_for(lambda: loopback_active(running) == 0)
