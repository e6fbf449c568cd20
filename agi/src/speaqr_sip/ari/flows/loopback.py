"""The ``loopback`` service: the caller hears their own audio after the processor.

caller ──▶ mixing bridge ◀── externalMedia (RTP/ulaw) ◀──▶ MediaRelay ◀──▶ processor

Set-up order: read the AGI's variables, take a slot of ``[policy.loopback]``'s limits (over
a limit: 403 before anything else, :mod:`.limits`), start the processor (so a Speaqr refusal
can still become a 503 before answering), answer, bridge, relay socket, externalMedia
channel into the bridge (:mod:`.media`). ``max_call_duration`` seconds after the answer the
call is hung up (normal clearing, cause ``max_duration``). Teardown undoes it in reverse
whichever side hangs up.
"""

import asyncio

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.ari.flows.limits import take_slot, wait_within_duration
from speaqr_sip.ari.flows.media import attach_media, open_bridge
from speaqr_sip.ari.flows.session import midcall_fallback, open_processor, read_session
from speaqr_sip.causes import CAUSE_CONGESTION


class LoopbackFlow(Flow):
    service = "loopback"

    async def run(self, ctx: CallContext) -> None:
        params = await read_session(ctx)
        if params is None or not take_slot(ctx):
            return
        processor = await open_processor(ctx, params)
        if processor is None:
            return

        await ctx.guard(ctx.client.answer(ctx.channel_id))
        ctx.answered = True
        answered_at = asyncio.get_running_loop().time()

        bridge_id = await open_bridge(ctx, f"loopback-{ctx.channel_id}", ctx.channel_id)
        relay_task = await attach_media(
            ctx, bridge_id, processor, midcall_fallback(ctx, params), label="loopback"
        )

        if await wait_within_duration(ctx, [relay_task], answered_at) is None:
            return
        if relay_task.done() and not relay_task.cancelled():
            failure = relay_task.result()
            ctx.hangup_cause = CAUSE_CONGESTION if failure else ctx.hangup_cause
            ctx.end(f"processor ended: {failure}" if failure else "processor ended")
