"""The ``loopback`` service: the caller hears their own audio after the processor.

caller ──▶ mixing bridge ◀── externalMedia (RTP/ulaw) ◀──▶ MediaRelay ◀──▶ processor

Set-up order: read the AGI's variables, start the processor (so a Speaqr refusal can
still become a 503 before answering), answer, bridge, relay socket, externalMedia
channel into the bridge (:mod:`.media`). Teardown undoes it in reverse whichever side
hangs up.
"""

import asyncio

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.ari.flows.media import attach_media, open_bridge
from speaqr_sip.ari.flows.session import midcall_fallback, open_processor, read_session
from speaqr_sip.causes import CAUSE_CONGESTION


class LoopbackFlow(Flow):
    service = "loopback"

    async def run(self, ctx: CallContext) -> None:
        params = await read_session(ctx)
        if params is None:
            return
        processor = await open_processor(ctx, params)
        if processor is None:
            return

        await ctx.guard(ctx.client.answer(ctx.channel_id))
        ctx.answered = True

        bridge_id = await open_bridge(ctx, f"loopback-{ctx.channel_id}", ctx.channel_id)
        relay_task = await attach_media(
            ctx, bridge_id, processor, midcall_fallback(ctx, params), label="loopback"
        )

        ended = asyncio.create_task(ctx.ended.wait())
        try:
            await asyncio.wait({relay_task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if relay_task.done() and not relay_task.cancelled():
            failure = relay_task.result()
            ctx.hangup_cause = CAUSE_CONGESTION if failure else ctx.hangup_cause
            ctx.end(f"processor ended: {failure}" if failure else "processor ended")
