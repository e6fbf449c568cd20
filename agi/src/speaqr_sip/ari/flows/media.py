"""Media building blocks shared by the flows: a bridge, and an externalMedia channel with its
UDP relay inside that bridge; plus the crossing used by the ``call`` service.

Every resource's undo is registered with ``ctx.on_teardown`` *before* the request that
creates it, and creation requests are not cut short when the caller hangs up (they are
bounded by ``[ari] request_timeout``): Asterisk creates the resource anyway once the request
is sent, and the teardown's DELETE must reach it after that. So whichever step fails or
whichever side hangs up, the call's teardown removes all of it.

Crossing (``call``): each leg has its own bridge and externalMedia channel; a leg's relay
feeds what it hears to one direction's processor session and plays the other direction's
output, so the caller's voice reaches the callee through session #1 and the callee's voice
reaches the caller through session #2::

    caller ─ bridge A ─ media A ─ relay A ──▶ session #1 ──▶ relay B ─ media B ─ bridge B ─ callee
                                  relay A ◀── session #2 ◀── relay B
"""

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

from speaqr_sip.ari.call import CallContext, CallEnded
from speaqr_sip.processors import Processor, ProcessorError, SessionParams
from speaqr_sip.relay import FailureHandler, MediaRelay


def still_up(ctx: CallContext) -> None:
    """Raise :class:`CallEnded` when the call ended (after an uninterruptible step)."""
    if ctx.ended.is_set():
        raise CallEnded(ctx.end_reason)


async def open_bridge(ctx: CallContext, name: str, *members: str) -> str:
    """A mixing bridge with ``members`` in it, destroyed at teardown; returns its id."""
    client = ctx.client
    bridge_id = f"speaqr-{uuid.uuid4().hex}"
    ctx.bridges.add(bridge_id)
    ctx.on_teardown(f"bridge {name}", lambda: client.destroy_bridge(bridge_id))
    await client.create_bridge(bridge_id, name=name)
    still_up(ctx)
    for member in members:
        await ctx.guard(client.add_channel(bridge_id, member))
    return bridge_id


async def aim_relay(
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


async def attach_media(
    ctx: CallContext,
    bridge_id: str,
    processor: Processor,
    on_failure: FailureHandler,
    *,
    label: str,
) -> "asyncio.Task[ProcessorError | None]":
    """Relay socket + externalMedia channel in ``bridge_id``; returns the running relay task.

    The task's result is the processor failure that ended the relay (``None`` otherwise).
    """
    client = ctx.client
    config = ctx.config
    relay = MediaRelay(
        processor,
        channel_id=f"{ctx.channel_id}/{label}",
        on_failure=on_failure,
        inbound_queue_frames=config.media.inbound_queue_frames,
    )
    port = await relay.open(config.media.bind_host)

    async def close_relay() -> None:
        await relay.close()
        stats = relay.stats
        for kind, count in dataclasses.asdict(stats).items():
            ctx.metrics.relay_packets.labels(kind).inc(count)
        ctx.log.info("media %s: %s", label, stats.as_text())

    ctx.on_teardown(f"relay {label}", close_relay)

    media_id = f"speaqr-media-{uuid.uuid4().hex}"
    ctx.claim(media_id)
    ctx.on_teardown(f"media channel {label}", lambda: client.hangup(media_id))
    # Asterisk answers the POST before the channel is in Stasis; a bridge takes it only after
    # its StasisStart (earlier: 422 "Channel not in Stasis application", seen under load).
    in_stasis = asyncio.Event()

    def on_event(event: dict[str, object]) -> None:
        channel = event.get("channel")
        if (
            event.get("type") == "StasisStart"
            and isinstance(channel, dict)
            and channel.get("id") == media_id
        ):
            in_stasis.set()

    ctx.listeners.append(on_event)
    try:
        media = await client.external_media(
            channel_id=media_id,
            app=config.ari.app,
            external_host=f"{config.media.bind_host}:{port}",
        )
        still_up(ctx)
        await aim_relay(ctx, relay, media_id, media.get("channelvars") or {})
        # Bounded: a StasisStart that never comes leaves addChannel to answer for itself.
        with contextlib.suppress(TimeoutError):
            await ctx.guard(asyncio.wait_for(in_stasis.wait(), config.ari.request_timeout))
    finally:
        ctx.listeners.remove(on_event)
    await ctx.guard(client.add_channel(bridge_id, media_id))

    task = asyncio.create_task(relay.run(), name=f"relay-{ctx.channel_id}-{label}")

    async def stop_relay() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    ctx.on_teardown(f"relay task {label}", stop_relay)
    ctx.log.info("media %s up: bridge=%s media=%s relay port=%d", label, bridge_id, media_id, port)
    return task


class Direction:
    """One direction of a translated call and the processor session serving it now.

    ``processor`` is replaced in place when the session falls back to passthrough, so both
    relays that touch this direction see the replacement.
    """

    def __init__(self, name: str, processor: Processor, params: SessionParams) -> None:
        self.name = name
        self.processor = processor
        self.params = params


class CrossedProcessor(Processor):
    """What one leg's relay sees: it feeds ``inbound`` and plays ``outbound``.

    It owns nothing: the sessions are started and closed by the call (``open_processor``
    registers their teardown). Until ``gate_open`` (both legs bridged) inbound audio -- the
    silence of a bridge with no caller in it yet -- is dropped instead of processed.
    """

    name = "crossed"

    def __init__(self, inbound: Direction, outbound: Direction, *, gate_open: bool = False) -> None:
        self.inbound = inbound
        self.outbound = outbound
        self.gate_open = gate_open

    async def start(self, params: SessionParams) -> None:
        return None

    async def process(self, frame: bytes) -> None:
        if self.gate_open:
            await self.inbound.processor.process(frame)

    def frames(self) -> AsyncIterator[bytes]:
        return self.outbound.processor.frames()

    async def close(self) -> None:
        return None


def crossed_failure_handler(crossed: CrossedProcessor, fallback: FailureHandler) -> FailureHandler:
    """The relay's failure handler for the direction it plays (``crossed.outbound``).

    ``fallback`` is :func:`speaqr_sip.ari.flows.session.midcall_fallback` for that direction:
    a replacement becomes the direction's processor (the relay keeps ``crossed``); ``None``
    ends the relay, and with it the call.
    """

    async def handle(exc: ProcessorError) -> Processor | None:
        replacement = await fallback(exc)
        if replacement is None:
            return None
        crossed.outbound.processor = replacement
        return crossed

    return handle
