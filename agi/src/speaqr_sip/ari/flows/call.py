"""The ``call`` service: dial a real number over the carrier trunk, translate both ways.

Order of events for one call (the caller sits in ``Stasis(loopback,call)``, unanswered):

1. Read the AGI's variables; the dialled number is X-Dial when present, else X-Destination
   (both E.164, else 484); the destination policy (403) and the concurrency limits (403,
   :mod:`.limits`) are checked and a slot is held until teardown.
2. Start two processor sessions (caller->callee: source->target; callee->caller:
   target->source). A refusal with ``fallback = "hangup"`` is a 503 before anything is
   dialled.
3. Create the callee leg on ``[call] trunk_endpoint_template`` (``POST /channels/create``
   with ``app=<ari app>``, ``appArgs=call-leg,<caller channel id>``, our own ``channelId``,
   claimed first so its events reach this call, ``originator=<caller>``, the configured
   caller-ID as channel variables) and dial it: a created leg is in Stasis from the start,
   so it can sit in a bridge before the answer and pass the carrier's early media.
4. While the callee rings, the media is prepared: bridge A with externalMedia A and
   bridge B with externalMedia B, their relays crossed through the two sessions
   (:mod:`.media`) but gated shut; the callee leg joins bridge B at once.
   Callee rings (ChannelStateChange ``Ringing``) -> ``POST /channels/<caller>/ring`` (180).
   Callee sends early media (Dial event ``PROGRESS``: a 183 with SDP, e.g. "number not in
   service") -> ``POST /channels/<caller>/progress`` (183 to the caller), the caller joins
   bridge A and the callee->caller gate opens: the caller hears the announcement through
   its session; the caller->callee gate stays shut until the answer.
   Callee ends before answer -> its Q.850 cause is mapped (``call_routing``) and the
   caller, still unanswered, is hung up with the matching cause (486, 480, 403, 404, 484,
   503). No answer within ``[call] answer_timeout`` -> 480.
5. Callee answers (ChannelStateChange ``Up``) -> answer the caller, gates open, caller
   into bridge A (unless early media put it there).
6. Either side hangs up, a session fails with ``fallback = "hangup"``, or
   ``[policy] max_call_duration`` passes -> the call ends; teardown hangs up both legs and
   removes bridges, media channels, relays and sessions.
"""

import asyncio
import contextlib
import dataclasses
import math
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from speaqr_sip.ari.call import END_EVENTS, CallContext, CallEnded
from speaqr_sip.ari.client import AriError
from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.ari.flows.call_routing import (
    INVALID_NUMBER,
    NO_ANSWER,
    POLICY,
    UNAVAILABLE,
    CallerOutcome,
    caller_id,
    outcome_for_callee_cause,
    trunk_endpoint,
    trunk_resource,
)
from speaqr_sip.ari.flows.limits import take_slot, wait_within_duration
from speaqr_sip.ari.flows.media import (
    CrossedProcessor,
    Direction,
    attach_media,
    crossed_failure_handler,
    open_bridge,
)
from speaqr_sip.ari.flows.refusal import refuse
from speaqr_sip.ari.flows.session import midcall_fallback, open_processor, read_session
from speaqr_sip.causes import CAUSE_CONGESTION
from speaqr_sip.config import CallConfig
from speaqr_sip.logsetup import safe
from speaqr_sip.processors import Processor, ProcessorError, SessionParams
from speaqr_sip.validation import E164_RE, dialled_number

# First Stasis argument of the callee leg; the second is the caller's channel id.
LEG_ARG = "call-leg"
# Asterisk's own dial timeout is a backstop behind our answer timer.
DIAL_TIMEOUT_MARGIN = 5
# Asterisk hangs the callee leg up by itself this long after the longest call we allow: the
# carrier leg of an application that died never outlives it for long (the caller's side is
# the dialplan's TIMEOUT(absolute)).
LEG_ABSOLUTE_TIMEOUT_MARGIN = 120


def direction_name(ctx: CallContext, params: SessionParams) -> str:
    """``caller->callee`` for the session that hears the caller, ``callee->caller`` otherwise."""
    return "caller->callee" if params.channel_id == ctx.channel_id else "callee->caller"


@dataclass(frozen=True, slots=True)
class LegEvent:
    kind: Literal["ringing", "early_media", "answered", "gone", "media_ready", "media_failed"]
    cause: int = 0


@dataclass
class PreparedMedia:
    caller_bridge: str
    callee_bridge: str
    sides: list[CrossedProcessor]
    relays: list["asyncio.Task[ProcessorError | None]"]

    # Set once the leg or the caller is in its bridge (before the answer where it can be).
    callee_joined: bool = False
    caller_joined: bool = False

    def open(self) -> None:
        for side in self.sides:
            side.gate_open = True

    def open_to_caller(self) -> None:
        """Early media: the callee's audio reaches the caller; the caller's does not go out."""
        self.sides[1].gate_open = True


class CallFlow(Flow):
    service = "call"

    def __init__(self) -> None:
        self.leg_id = f"speaqr-leg-{uuid.uuid4().hex}"
        self._leg_events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._leg_up = False
        self._leg_gone = False
        # Asterisk reports a dial it started (a Dial event); one it could not start (e.g. no
        # bridge technology for its dial bridge) only by silence.
        self._dialling = False
        self._early_media = False
        self._media: PreparedMedia | None = None
        self._ctx: CallContext | None = None

    async def run(self, ctx: CallContext) -> None:
        self._ctx = ctx
        params = await read_session(ctx)
        if params is None:
            return
        number = self._dialled_number(ctx, params)
        if number is None or not self._admit(ctx, number):
            return
        if not await self._trunk_reachable(ctx):
            return
        directions = await self._open_directions(ctx, params)
        if directions is None:
            return
        if not await self._dial(ctx, number):
            return
        prepare = asyncio.create_task(
            self._prepare_media(ctx, *directions), name=f"media-{ctx.channel_id}"
        )
        prepare.add_done_callback(self._media_prepared)
        try:
            answered_at = await self._wait_for_answer(ctx)
            if answered_at is None:
                return
            media = await ctx.guard(asyncio.shield(prepare))
            await ctx.guard(ctx.client.answer(ctx.channel_id))
            ctx.answered = True
            media.open()  # before the legs join: none of their first words is dropped
            if not media.caller_joined:
                await ctx.guard(ctx.client.add_channel(media.caller_bridge, ctx.channel_id))
            if not media.callee_joined:
                await ctx.guard(ctx.client.add_channel(media.callee_bridge, self.leg_id))
            ctx.log.info("call up: caller and callee bridged through two processor sessions")
            await self._converse(ctx, media.relays, answered_at)
        finally:
            await self._settle(ctx, prepare)

    # --- admission ----------------------------------------------------------------------

    def _refuse(self, ctx: CallContext, outcome: CallerOutcome, why: str) -> None:
        """End the call before answer: the caller is hung up with ``outcome``'s cause."""
        refuse(ctx, outcome, why)

    def _dialled_number(self, ctx: CallContext, params: SessionParams) -> str | None:
        dial = ctx.variables.get("SPEAQR_DIAL", "")
        number = dialled_number(params.destination, dial)
        if not (E164_RE.fullmatch(params.destination) and E164_RE.fullmatch(number)):
            ctx.metrics.calls_refused += 1
            self._refuse(ctx, INVALID_NUMBER, "X-Destination/X-Dial not E.164")
            return None
        ctx.record.dialled_number = number
        return number

    def _admit(self, ctx: CallContext, number: str) -> bool:
        violation = ctx.services.destinations.check(number)
        if violation is not None:
            ctx.metrics.calls_refused += 1
            self._refuse(ctx, POLICY, f"refused by policy ({violation.reason}: {violation.detail})")
            return False
        return take_slot(ctx)

    async def _trunk_reachable(self, ctx: CallContext) -> bool:
        """``False`` (and 503) when Asterisk's qualify says the trunk is offline.

        Asked for every call, so a carrier that recovers is dialled again at once. A failed
        check does not refuse the call: dialling decides then.
        """
        call = ctx.config.call
        target = trunk_resource(call.trunk_endpoint_template)
        if not call.trunk_qualified or target is None:
            return True
        technology, resource = target
        try:
            endpoint = await ctx.guard(ctx.client.get_endpoint(technology, resource))
        except AriError as exc:
            ctx.log.warning("could not ask the state of %s/%s: %s", technology, resource, exc)
            return True
        state = (endpoint or {}).get("state")
        if state != "offline":
            return True
        ctx.metrics.calls_refused += 1
        self._refuse(ctx, UNAVAILABLE, f"carrier {technology}/{resource} unreachable (qualify)")
        return False

    # --- processors ---------------------------------------------------------------------

    async def open_direction(self, ctx: CallContext, params: SessionParams) -> Processor | None:
        """One processor session (a hook: tests substitute their own processors)."""
        return await open_processor(ctx, params, part=direction_name(ctx, params))

    async def _open_directions(
        self, ctx: CallContext, params: SessionParams
    ) -> tuple[Direction, Direction] | None:
        forward = params
        backward = dataclasses.replace(
            params,
            channel_id=self.leg_id,
            source_language=params.target_language,
            target_language=params.source_language,
        )
        # Both at once (each is bounded by [processor] start_timeout); wait for both so
        # that every started session has its teardown registered before we go on.
        results = await asyncio.gather(
            self.open_direction(ctx, forward),
            self.open_direction(ctx, backward),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        first, second = results
        if not isinstance(first, Processor) or not isinstance(second, Processor):
            return None  # open_processor set the 503 and the record's outcome
        return Direction(direction_name(ctx, forward), first, forward), Direction(
            direction_name(ctx, backward), second, backward
        )

    # --- dialling -----------------------------------------------------------------------

    async def _dial(self, ctx: CallContext, number: str) -> bool:
        client = ctx.client
        call = ctx.config.call
        leg_id = self.leg_id
        ctx.claim(leg_id, ends_call=False)
        ctx.listeners.append(self._on_event)
        ctx.on_teardown("callee leg", lambda: client.hangup(leg_id))
        endpoint = trunk_endpoint(number, call)
        params = {
            "endpoint": endpoint,
            "app": ctx.config.ari.app,
            "appArgs": f"{LEG_ARG},{ctx.channel_id}",
            "channelId": leg_id,
            "originator": ctx.channel_id,
        }
        timeout = str(math.ceil(call.answer_timeout) + DIAL_TIMEOUT_MARGIN)
        try:
            # Neither is cut short by a caller hangup: once sent, Asterisk creates (dials) the
            # leg anyway, and the teardown's DELETE must come after that (request_timeout
            # bounds both).
            await client.request(
                "POST",
                "/channels/create",
                params=params,
                json={"variables": leg_variables(call, ctx)},
            )
            if ctx.ended.is_set():
                raise CallEnded(ctx.end_reason)
            await client.request("POST", f"/channels/{leg_id}/dial", params={"timeout": timeout})
        except AriError as exc:
            self._refuse(ctx, UNAVAILABLE, f"dialling {endpoint} failed ({exc})")
            return False
        if ctx.ended.is_set():
            raise CallEnded(ctx.end_reason)
        ctx.log.info(
            "call_id=%s dialling %s (callee leg %s, answer timeout %.0f s)",
            safe(ctx.record.call_id),
            endpoint,
            leg_id,
            call.answer_timeout,
        )
        if call.ringback == "immediate":
            await self._ring(ctx)
        return True

    async def _ring(self, ctx: CallContext) -> None:
        try:
            await ctx.guard(ctx.client.request("POST", f"/channels/{ctx.channel_id}/ring"))
        except AriError as exc:
            ctx.log.warning("ringing the caller failed: %s", exc)

    async def _wait_for_answer(self, ctx: CallContext) -> float | None:
        """Until the callee answers (its loop time) or the call is decided (``None``)."""
        loop = asyncio.get_running_loop()
        timeout = ctx.config.call.answer_timeout
        deadline = loop.time() + timeout
        dial_deadline = loop.time() + ctx.config.ari.request_timeout
        rung = ctx.config.call.ringback == "immediate"
        while True:
            now = loop.time()
            remaining = deadline - now
            if remaining <= 0:
                self._refuse(ctx, NO_ANSWER, f"no answer within {timeout:.0f} s")
                return None
            if not self._dialling:
                if now >= dial_deadline:
                    self._refuse(ctx, UNAVAILABLE, "Asterisk did not start dialling the callee leg")
                    return None
                remaining = min(remaining, dial_deadline - now)
            try:
                event = await ctx.guard(self._next_leg_event(remaining))
            except TimeoutError:
                continue
            if event.kind == "ringing" and not rung:
                rung = True
                await self._ring(ctx)
            elif event.kind in ("early_media", "media_ready"):
                self._early_media = self._early_media or event.kind == "early_media"
                await self._pass_early_media(ctx)
            elif event.kind == "answered":
                ctx.log.info("callee answered")
                return loop.time()
            elif event.kind == "gone":
                outcome = outcome_for_callee_cause(event.cause)
                self._refuse(ctx, outcome, f"callee leg ended before answer (cause {event.cause})")
                return None
            elif event.kind == "media_failed":
                self._refuse(ctx, UNAVAILABLE, "media could not be prepared")
                return None

    async def _pass_early_media(self, ctx: CallContext) -> None:
        """Once the callee sent early media and the media is ready: the caller hears it."""
        media = self._media
        if not self._early_media or media is None or media.caller_joined:
            return
        try:
            await ctx.guard(ctx.client.request("POST", f"/channels/{ctx.channel_id}/progress"))
        except AriError as exc:
            ctx.log.warning("early media not passed: progress to the caller failed: %s", exc)
            self._early_media = False
            return
        media.open_to_caller()
        await ctx.guard(ctx.client.add_channel(media.caller_bridge, ctx.channel_id))
        media.caller_joined = True
        ctx.log.info("early media from the callee: passed to the caller (183)")

    async def _next_leg_event(self, limit: float) -> LegEvent:
        async with asyncio.timeout(limit):
            return await self._leg_events.get()

    def _on_event(self, event: dict[str, Any]) -> None:
        """Events of the callee leg (a listener on the call; never blocks)."""
        kind = event.get("type")
        channel = event.get("peer" if kind == "Dial" else "channel") or {}
        if channel.get("id") != self.leg_id or self._leg_gone:
            return
        if kind == "ChannelStateChange":
            self._dialling = True
            state = channel.get("state")
            if state == "Ringing":
                self._leg_events.put_nowait(LegEvent("ringing"))
            elif state == "Up" and not self._leg_up:
                self._leg_up = True
                self._leg_events.put_nowait(LegEvent("answered"))
        elif kind == "Dial":
            self._dialling = True
            if event.get("dialstatus") == "PROGRESS" and not self._leg_up:
                self._leg_events.put_nowait(LegEvent("early_media"))
        elif kind in END_EVENTS:
            cause = event.get("cause")
            cause = cause if isinstance(cause, int) else 0
            if self._leg_up:
                self._leg_gone = True
                if self._ctx is not None:
                    self._ctx.end(f"callee hung up ({kind}, cause {cause})")
            elif cause or kind == "ChannelDestroyed":
                self._leg_gone = True
                self._leg_events.put_nowait(LegEvent("gone", cause))

    # --- conversation -------------------------------------------------------------------

    async def _prepare_media(
        self, ctx: CallContext, forward: Direction, backward: Direction
    ) -> "PreparedMedia":
        """Two bridges, each with its externalMedia channel and relay, gated shut."""
        caller_bridge = await open_bridge(ctx, f"call-{ctx.channel_id}-caller")
        callee_bridge = await open_bridge(ctx, f"call-{ctx.channel_id}-callee")
        caller_side = CrossedProcessor(inbound=forward, outbound=backward)
        callee_side = CrossedProcessor(inbound=backward, outbound=forward)
        caller_relay = await attach_media(
            ctx,
            caller_bridge,
            caller_side,
            crossed_failure_handler(
                caller_side, midcall_fallback(ctx, backward.params, part=backward.name)
            ),
            label="caller",
        )
        callee_relay = await attach_media(
            ctx,
            callee_bridge,
            callee_side,
            crossed_failure_handler(
                callee_side, midcall_fallback(ctx, forward.params, part=forward.name)
            ),
            label="callee",
        )
        media = PreparedMedia(
            caller_bridge, callee_bridge, [caller_side, callee_side], [caller_relay, callee_relay]
        )
        await self._join_callee(ctx, media)
        return media

    async def _join_callee(self, ctx: CallContext, media: "PreparedMedia") -> None:
        """The leg into bridge B before the answer, where its early media can reach us.

        A leg that is gone or not yet dialable makes this fail; its own events decide the
        call then, and the answer adds it again.
        """
        try:
            await ctx.guard(ctx.client.add_channel(media.callee_bridge, self.leg_id))
        except AriError as exc:
            ctx.log.info("callee leg not in its bridge before the answer: %s", exc)
            return
        media.callee_joined = True

    def _media_prepared(self, task: "asyncio.Task[PreparedMedia]") -> None:
        """Preparation failed while the callee rings: end the call before the answer (503)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._media = task.result()
            self._leg_events.put_nowait(LegEvent("media_ready"))
            return
        if isinstance(exc, CallEnded):
            return
        if self._ctx is not None:
            self._ctx.log.warning("media preparation failed: %s", exc)
        self._leg_events.put_nowait(LegEvent("media_failed"))

    async def _settle(self, ctx: CallContext, prepare: "asyncio.Task[PreparedMedia]") -> None:
        """Let an unfinished preparation complete its request, so the teardown sees all."""
        if not prepare.done():
            limit = 2 * ctx.config.ari.request_timeout + 1.0
            await asyncio.wait({prepare}, timeout=limit)
        if not prepare.done():
            prepare.cancel()
        with contextlib.suppress(BaseException):
            await prepare

    async def _converse(
        self,
        ctx: CallContext,
        relays: list["asyncio.Task[ProcessorError | None]"],
        answered_at: float,
    ) -> None:
        if await wait_within_duration(ctx, relays, answered_at) is None:
            return  # both legs are hung up by the teardown
        for relay in relays:
            if relay.done() and not relay.cancelled():
                failure = relay.result()
                if failure is not None:
                    ctx.hangup_cause = CAUSE_CONGESTION
                    ctx.record.set_outcome("processor_failed")
                ctx.end(f"processor ended: {failure}" if failure else "processor ended")


class CallLegFlow(Flow):
    """A callee leg whose call is gone (e.g. the caller hung up as the callee answered, or
    the application restarted): hang it up."""

    service = LEG_ARG

    async def run(self, ctx: CallContext) -> None:
        ctx.log.warning("callee leg without a live call: hanging it up")


def leg_variables(call: CallConfig, ctx: CallContext) -> dict[str, str]:
    """Channel variables of the callee leg at creation: its absolute timeout, and the
    caller-ID the carrier sees (From and P-Asserted-Identity come from the leg's connected
    line; ``i``: set it without sending an update on a channel not yet dialled)."""
    longest = (
        math.ceil(call.answer_timeout)
        + DIAL_TIMEOUT_MARGIN
        + ctx.config.policy.max_call_duration
        + LEG_ABSOLUTE_TIMEOUT_MARGIN
    )
    presented = caller_id(call, ctx.record.username)
    return {
        "TIMEOUT(absolute)": str(longest),
        "CALLERID(all)": presented,
        "CONNECTEDLINE(all,i)": presented,
    }
