"""The ``loopback`` service: the caller hears their own audio after the processor.

caller ──▶ mixing bridge ◀── externalMedia (RTP/ulaw) ◀──▶ MediaRelay ◀──▶ processor

Set-up order: read the AGI's variables, start the processor (so a Speaqr refusal can
still become a 503 before answering), answer, bridge, relay socket, externalMedia
channel into the bridge. Teardown undoes it in reverse whichever side hangs up.
"""

import asyncio
import contextlib
import uuid

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.ari.flows.session import midcall_fallback, open_processor, read_session
from speaqr_sip.causes import CAUSE_CONGESTION
from speaqr_sip.relay import MediaRelay


class LoopbackFlow(Flow):
    service = "loopback"

    async def run(self, ctx: CallContext) -> None:
        client = ctx.client
        config = ctx.config
        params = await read_session(ctx)
        if params is None:
            return
        processor = await open_processor(ctx, params)
        if processor is None:
            return

        await ctx.guard(client.answer(ctx.channel_id))
        ctx.answered = True

        bridge_id = f"speaqr-{uuid.uuid4().hex}"
        await ctx.guard(client.create_bridge(bridge_id, name=f"loopback-{ctx.channel_id}"))
        ctx.on_teardown("bridge", lambda: client.destroy_bridge(bridge_id))
        await ctx.guard(client.add_channel(bridge_id, ctx.channel_id))

        relay = MediaRelay(
            processor,
            channel_id=ctx.channel_id,
            on_failure=midcall_fallback(ctx, params),
            inbound_queue_frames=config.media.inbound_queue_frames,
        )
        port = await relay.open(config.media.bind_host)

        async def close_relay() -> None:
            await relay.close()
            stats = relay.stats
            ctx.metrics.rtp_malformed += stats.malformed
            ctx.metrics.rtp_foreign += stats.foreign
            ctx.log.info("media: %s", stats.as_text())

        ctx.on_teardown("relay", close_relay)

        media_id = f"speaqr-media-{uuid.uuid4().hex}"
        ctx.claim(media_id)
        media = await ctx.guard(
            client.external_media(
                channel_id=media_id,
                app=config.ari.app,
                external_host=f"{config.media.bind_host}:{port}",
            )
        )
        ctx.on_teardown("media channel", lambda: client.hangup(media_id))
        await self._aim_relay(ctx, relay, media_id, media.get("channelvars") or {})
        await ctx.guard(client.add_channel(bridge_id, media_id))

        relay_task = asyncio.create_task(relay.run(), name=f"relay-{ctx.channel_id}")

        async def stop_relay() -> None:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task

        ctx.on_teardown("relay task", stop_relay)
        ctx.log.info("loopback up: bridge=%s media=%s relay port=%d", bridge_id, media_id, port)

        ended = asyncio.create_task(ctx.ended.wait())
        try:
            await asyncio.wait({relay_task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if relay_task.done() and not relay_task.cancelled():
            failure = relay_task.result()
            ctx.hangup_cause = CAUSE_CONGESTION if failure else ctx.hangup_cause
            ctx.end(f"processor ended: {failure}" if failure else "processor ended")

    @staticmethod
    async def _aim_relay(
        ctx: CallContext, relay: MediaRelay, media_id: str, channelvars: dict[str, str]
    ) -> None:
        """Tell the relay where Asterisk's RTP socket is, so audio can flow out first."""
        host = channelvars.get("UNICASTRTP_LOCAL_ADDRESS", "")
        port = channelvars.get("UNICASTRTP_LOCAL_PORT", "")
        if not (host and port):
            host, port = await ctx.guard(
                asyncio.gather(
                    ctx.client.get_variable(media_id, "UNICASTRTP_LOCAL_ADDRESS"),
                    ctx.client.get_variable(media_id, "UNICASTRTP_LOCAL_PORT"),
                )
            )
        if host and port.isdigit():
            relay.peer_hint(host, int(port))
        else:
            ctx.log.info("Asterisk's RTP address unknown; learning it from the first packet")
