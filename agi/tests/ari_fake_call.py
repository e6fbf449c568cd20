"""The fake ARI plus what the ``call`` service needs: originate to a scripted carrier, ring.

:class:`CarrierAri` answers ``POST /ari/channels`` like Asterisk does for an originate with
``app``: the new channel is returned at once, then -- as the scripted :class:`Carrier`
says -- it rings (ChannelStateChange ``Ringing``), answers (ChannelStateChange ``Up`` +
StasisStart with the ``appArgs``) or fails (ChannelHangupRequest + ChannelDestroyed with a
Q.850 cause, as chan_pjsip reports a carrier's 486/480/403/...).
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from ari_fake import FakeAri, FakeChannel

Outcome = Literal["answer", "fail", "ring_forever", "http_error"]


@dataclass
class Carrier:
    outcome: Outcome = "answer"
    # Q.850 cause of the callee leg for outcome "fail" (17 busy, 21 rejected, ...).
    cause: int = 16
    # Also emit ChannelHangupRequest before ChannelDestroyed (with ``request_cause``).
    hangup_request: bool = True
    request_cause: int | None = None
    # Asterisk taking its time to create the leg before answering the originate request.
    originate_delay: float = 0.0
    ring_after: float = 0.02
    answer_after: float = 0.05
    # Numbers the carrier was asked for, with the caller-ID it saw.
    dialled: list[tuple[str, str]] = field(default_factory=list)


class CarrierAri(FakeAri):
    def __init__(self) -> None:
        super().__init__()
        self.carrier = Carrier()
        self.originations: list[dict[str, str]] = []
        self.origination_bodies: list[dict[str, Any]] = []
        self.rings: list[str] = []
        self.created_legs: list[str] = []
        # Asterisk taking its time over externalMedia (a caller may hang up meanwhile).
        self.media_delay = 0.0
        self.media_requests = 0
        self.media_error = False
        # PJSIP endpoint states as qualify reports them; absent: 404.
        self.endpoint_states: dict[str, str] = {"carrier": "online"}
        self.endpoint_error = False
        self._scripts: set[asyncio.Task[None]] = set()
        self.app.router.add_post("/ari/channels", self._originate)
        self.app.router.add_post("/ari/channels/{id}/ring", self._ring)
        self.app.router.add_get("/ari/endpoints/{tech}/{resource}", self._endpoint)

    async def stop(self) -> None:
        for task in list(self._scripts):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    # --- what a test does -------------------------------------------------------------

    def leg_ids(self) -> list[str]:
        return [o["channelId"] for o in self.originations]

    async def callee_hangs_up(self, leg_id: str) -> None:
        await self.caller_hangs_up(leg_id)  # the same events as any channel hanging up

    # --- handlers ---------------------------------------------------------------------

    async def _originate(self, request: web.Request) -> web.Response:
        self._record(request)
        query = dict(request.query)
        body = await request.json() if request.can_read_body else {}
        self.originations.append(query)
        self.origination_bodies.append(body)
        carrier = self.carrier
        if carrier.outcome == "http_error":
            raise web.HTTPInternalServerError(
                text=json.dumps({"message": "Allocation failed"}), content_type="application/json"
            )
        for key in ("endpoint", "app", "appArgs", "channelId", "originator"):
            if not query.get(key):
                raise web.HTTPBadRequest(text=f"{key} missing")
        if query["originator"] not in self.channels:
            raise web.HTTPBadRequest(text="Provided originator channel was not found")
        carrier.dialled.append((query["endpoint"], query.get("callerId", "")))
        if carrier.originate_delay:
            await asyncio.sleep(carrier.originate_delay)
        channel = FakeChannel(query["channelId"], state="Down")
        self.channels[channel.id] = channel
        self.created_legs.append(channel.id)
        task = asyncio.create_task(self._script(channel.id, query["appArgs"].split(",")))
        self._scripts.add(task)
        task.add_done_callback(self._scripts.discard)
        return web.json_response(channel.json())

    async def _script(self, leg_id: str, args: list[str]) -> None:
        carrier = self.carrier
        await asyncio.sleep(carrier.ring_after)
        channel = self.channels.get(leg_id)
        if channel is None:
            return
        channel.state = "Ringing"
        await self.emit("ChannelStateChange", leg_id)
        if carrier.outcome == "ring_forever":
            return
        await asyncio.sleep(carrier.answer_after)
        channel = self.channels.get(leg_id)
        if channel is None:
            return
        if carrier.outcome == "answer":
            channel.state = "Up"
            await self.emit("ChannelStateChange", leg_id)
            await self.emit("StasisStart", leg_id, args=args)
            return
        if carrier.hangup_request:
            cause = carrier.cause if carrier.request_cause is None else carrier.request_cause
            await self.emit("ChannelHangupRequest", leg_id, cause=cause)
        del self.channels[leg_id]
        await self.emit("ChannelDestroyed", leg_id, snapshot=channel, cause=carrier.cause)

    async def _external_media(self, request: web.Request) -> web.Response:
        self.media_requests += 1
        if self.media_delay:
            await asyncio.sleep(self.media_delay)
        if self.media_error:
            self._record(request)
            raise web.HTTPInternalServerError(text="chan_rtp not loaded")
        return await super()._external_media(request)

    async def _endpoint(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.endpoint_error:
            raise web.HTTPInternalServerError(text="overloaded")
        tech, resource = request.match_info["tech"], request.match_info["resource"]
        state = self.endpoint_states.get(resource)
        if tech != "PJSIP" or state is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Endpoint not found"}))
        return web.json_response(
            {"technology": tech, "resource": resource, "state": state, "channel_ids": []}
        )

    async def _ring(self, request: web.Request) -> web.Response:
        self._record(request)
        channel = self._channel(request)
        self.rings.append(channel.id)
        return web.Response(status=204)
