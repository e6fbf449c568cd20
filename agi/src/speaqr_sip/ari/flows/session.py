"""Shared flow steps: read the AGI's channel variables, open a processor with fallback."""

import asyncio
from typing import Literal

from speaqr_sip.ari.call import CallContext
from speaqr_sip.causes import CAUSE_CALL_REJECTED, CAUSE_CONGESTION
from speaqr_sip.logsetup import safe
from speaqr_sip.processors import (
    Processor,
    ProcessorError,
    SessionParams,
    create_processor,
    kind_for_call,
)
from speaqr_sip.relay import FailureHandler

SESSION_VARIABLES = (
    "SPEAQR_CHECK",
    "SPEAQR_CALL_ID",
    "SPEAQR_SERVICE",
    "SPEAQR_EMAIL",
    "SPEAQR_ORIGIN",
    "SPEAQR_DESTINATION",
    "SPEAQR_DIAL",
    "SPEAQR_SOURCE_LANGUAGE",
    "SPEAQR_TARGET_LANGUAGE",
    "SPEAQR_VOICE",
    "SPEAQR_PROCESSOR",
)


async def read_session(ctx: CallContext) -> SessionParams | None:
    """The call's parameters as the AGI check left them; ``None`` (and 403) if unchecked.

    They come with the StasisStart channel snapshot when ari.conf lists them in
    ``channelvars`` (the speaqr_asterisk role does); whatever the snapshot lacks is read with
    one ``GET /channels/{id}/variable`` each (every ARI request costs Asterisk a password
    check: eleven of them used to be most of the call's set-up time).
    """
    snapshot = ctx.channel.get("channelvars")
    known: dict[str, str] = (
        {k: str(v) for k, v in snapshot.items() if k in SESSION_VARIABLES and v is not None}
        if isinstance(snapshot, dict)
        else {}
    )
    missing = [name for name in SESSION_VARIABLES if name not in known]
    if missing:
        values = await ctx.guard(
            asyncio.gather(*(ctx.client.get_variable(ctx.channel_id, name) for name in missing))
        )
        known.update(zip(missing, values, strict=True))
    found = {name: known[name] for name in SESSION_VARIABLES}
    ctx.variables = found
    record = ctx.record
    record.call_id = found["SPEAQR_CALL_ID"]
    record.username = found["SPEAQR_ORIGIN"]
    record.destination = found["SPEAQR_DESTINATION"]
    if found["SPEAQR_CHECK"] != "OK" or found["SPEAQR_SERVICE"] != ctx.service:
        record.set_outcome("unchecked", 403)
        ctx.log.error(
            "call_id=%s reached Stasis without a passed AGI check for service %s; refused (403)",
            safe(found["SPEAQR_CALL_ID"]),
            ctx.service,
        )
        ctx.metrics.calls_refused += 1
        ctx.hangup_cause = CAUSE_CALL_REJECTED
        return None
    record.report_progress()
    ctx.log.info(
        "session call_id=%s origin=%s destination=%s languages=%s>%s",
        safe(found["SPEAQR_CALL_ID"]),
        found["SPEAQR_ORIGIN"],
        found["SPEAQR_DESTINATION"],
        found["SPEAQR_SOURCE_LANGUAGE"],
        found["SPEAQR_TARGET_LANGUAGE"],
    )
    return SessionParams(
        channel_id=ctx.channel_id,
        email=found["SPEAQR_EMAIL"],
        origin=found["SPEAQR_ORIGIN"],
        destination=found["SPEAQR_DESTINATION"],
        source_language=found["SPEAQR_SOURCE_LANGUAGE"],
        target_language=found["SPEAQR_TARGET_LANGUAGE"],
        voice=found["SPEAQR_VOICE"],
    )


async def _start(
    ctx: CallContext, kind: Literal["passthrough", "speaqr"], params: SessionParams
) -> Processor:
    processor = create_processor(ctx.config, kind)
    try:
        await ctx.guard(
            asyncio.wait_for(processor.start(params), ctx.config.processor.start_timeout)
        )
    except BaseException:
        await processor.close()
        raise
    return processor


async def open_processor(
    ctx: CallContext, params: SessionParams, *, part: str = ""
) -> Processor | None:
    """Start the call's processor (the user's own choice, else the configured one); on
    Speaqr failure fall back or refuse (503). ``part``: the direction it serves, for the
    call record (the ``call`` service has two)."""
    requested = ctx.variables.get("SPEAQR_PROCESSOR", "")
    choice = kind_for_call(ctx.config, requested)
    if choice.kind is None:
        ctx.log.warning(
            "processor %s unavailable (%s): refusing the call (503)", requested, choice.note
        )
        ctx.hangup_cause = CAUSE_CONGESTION
        ctx.record.set_outcome("processor_failed", 503)
        return None
    if choice.note:
        ctx.log.warning(
            "processor %s unavailable (%s): serving %s", requested, choice.note, choice.kind
        )
        ctx.metrics.speaqr_fallbacks += 1
    kind = choice.kind
    try:
        processor = await _start(ctx, kind, params)
    except (ProcessorError, TimeoutError) as exc:
        reason = str(exc) or "start timed out"
        if ctx.config.processor.fallback == "passthrough":
            ctx.log.warning("processor %s unavailable (%s): serving passthrough", kind, reason)
            ctx.metrics.speaqr_fallbacks += 1
            processor = await _start(ctx, "passthrough", params)
        else:
            ctx.log.warning("processor %s unavailable (%s): refusing the call (503)", kind, reason)
            ctx.hangup_cause = CAUSE_CONGESTION
            ctx.record.set_outcome("processor_failed", 503)
            return None
    ctx.on_teardown(f"processor {processor.name}", processor.close)
    ctx.record.processor_used(processor.name, part=part)
    ctx.log.info("processor %s started%s", processor.name, f" ({part})" if part else "")
    return processor


def midcall_fallback(ctx: CallContext, params: SessionParams, *, part: str = "") -> FailureHandler:
    """A relay failure handler: switch to passthrough, or end the call, as configured."""

    async def handle(exc: ProcessorError) -> Processor | None:
        if ctx.config.processor.fallback != "passthrough":
            ctx.log.warning("processor failed mid-call (%s): ending the call", exc)
            ctx.hangup_cause = CAUSE_CONGESTION
            ctx.record.set_outcome("processor_failed", 503)
            return None
        ctx.log.warning(
            "processor failed mid-call%s (%s): continuing with passthrough",
            f" ({part})" if part else "",
            exc,
        )
        ctx.metrics.speaqr_fallbacks += 1
        replacement = create_processor(ctx.config, "passthrough")
        await replacement.start(params)
        ctx.on_teardown("processor passthrough (fallback)", replacement.close)
        ctx.record.processor_used(replacement.name, part=part)
        ctx.record.report_progress()
        return replacement

    return handle
