"""The ``call`` service asks Asterisk whether a qualified trunk is reachable before dialling."""

import asyncio

import pytest

from speaqr_sip.ari.flows.call_routing import trunk_resource
from test_call_flow import AGI_CALL, CALLER, all_clear, caller_requests, record_of, start

QUALIFIED = {"call": {"trunk_qualified": True, "answer_timeout": 30.0}}


def endpoint_asks(run_fake: object) -> list[str]:
    requests = getattr(run_fake, "requests", [])
    return [p for m, p, _q in requests if m == "GET" and p.startswith("/ari/endpoints/")]


def test_the_endpoint_is_read_from_the_dial_template() -> None:
    assert trunk_resource("PJSIP/{number}@carrier") == ("PJSIP", "carrier")
    assert trunk_resource("PJSIP/{number}@my-trunk_2") == ("PJSIP", "my-trunk_2")
    assert trunk_resource("PJSIP/carrier/sip:{number}@10.0.0.1;transport=tcp") is None
    assert trunk_resource("PJSIP/{number}") is None


@pytest.mark.asyncio
async def test_an_offline_carrier_is_503_at_once_and_used_again_once_it_recovers() -> None:
    run = await start(QUALIFIED)
    try:
        fake = run.fake
        fake.endpoint_states["carrier"] = "offline"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
        await fake.wait_for(lambda: CALLER not in fake.channels)
        assert loop.time() - started < 2.0  # not the 30 s answer timeout
        assert caller_requests(fake) == ["DELETE ?reason_code=34"]
        assert fake.creations == []
        assert endpoint_asks(fake) == ["/ari/endpoints/PJSIP/carrier"]
        record = await record_of(run)
        assert (record.sip_status, record.cause) == (503, "unavailable")
        await all_clear(run)

        fake.endpoint_states["carrier"] = "online"
        await fake.caller_enters_stasis("1700000000.2", ["call"], AGI_CALL)
        await fake.wait_for(lambda: len(fake.creations) == 1)
    finally:
        await run.close()


@pytest.mark.asyncio
async def test_a_trunk_without_qualify_is_dialled_without_asking() -> None:
    run = await start({})
    try:
        fake = run.fake
        fake.endpoint_states["carrier"] = "offline"  # what Asterisk would say is ignored
        await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
        await fake.wait_for(lambda: len(fake.creations) == 1)
        assert endpoint_asks(fake) == []
    finally:
        await run.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("failure", ["error", "unknown_endpoint", "state_unknown"])
async def test_a_check_that_says_nothing_definite_does_not_refuse_the_call(failure: str) -> None:
    run = await start(QUALIFIED)
    try:
        fake = run.fake
        if failure == "error":
            fake.endpoint_error = True
        elif failure == "unknown_endpoint":
            fake.endpoint_states.clear()
        else:
            fake.endpoint_states["carrier"] = "unknown"
        await fake.caller_enters_stasis(CALLER, ["call"], AGI_CALL)
        await fake.wait_for(lambda: len(fake.creations) == 1)
        assert endpoint_asks(fake) == ["/ari/endpoints/PJSIP/carrier"]
    finally:
        await run.close()
