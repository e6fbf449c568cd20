"""The fake ARI plus what the ``call`` service needs: a callee leg created and dialled to a
scripted carrier, ring, progress.

:class:`CarrierAri` answers ``POST /ari/channels/create`` like Asterisk does with ``app``:
the new channel (state ``Down``) is returned and enters Stasis at once (StasisStart with the
``appArgs``). ``POST /ari/channels/<leg>/dial`` then runs the scripted :class:`Carrier`: the
leg rings (ChannelStateChange ``Ringing``), may send early media (a Dial event with
``dialstatus`` ``PROGRESS``, as a bridged leg reports a 183), answers (ChannelStateChange
``Up``) or fails (ChannelHangupRequest + ChannelDestroyed with a Q.850 cause, as chan_pjsip
reports a carrier's 486/480/403/...).
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from ari_fake import FakeAri, FakeChannel

Outcome = Literal["answer", "fail", "ring_forever", "http_error", "dial_error", "dial_silent"]


@dataclass
class Carrier:
    outcome: Outcome = "answer"
    # Q.850 cause of the callee leg for outcome "fail" (17 busy, 21 rejected, ...).
    cause: int = 16
    # Also emit ChannelHangupRequest before ChannelDestroyed (with ``request_cause``).
    hangup_request: bool = True
    request_cause: int | None = None
    # Asterisk taking its time to create the leg before answering the create request.
    create_delay: float = 0.0
    ring_after: float = 0.02
    # Early media (183 with SDP) this long after ringing; None: none.
    progress_after: float | None = None
    answer_after: float = 0.05
    # Numbers the carrier was asked for, with the caller-ID it saw.
    dialled: list[tuple[str, str]] = field(default_factory=list)


class CarrierAri(FakeAri):
    def __init__(self) -> None:
        super().__init__()
        self.carrier = Carrier()
        self.creations: list[dict[str, str]] = []
        self.creation_bodies: list[dict[str, Any]] = []
        self.dials: list[tuple[str, dict[str, str]]] = []
        self.rings: list[str] = []
        self.progresses: list[str] = []
        self.progress_error = False
        self.created_legs: list[str] = []
        # Asterisk taking its time over externalMedia (a caller may hang up meanwhile).
        self.media_delay = 0.0
        self.media_requests = 0
        self.media_error = False
        # PJSIP endpoint states as qualify reports them; absent: 404.
        self.endpoint_states: dict[str, str] = {"carrier": "online"}
        self.endpoint_error = False
        self._scripts: set[asyncio.Task[None]] = set()
        self.app.router.add_post("/ari/channels/create", self._create)
        self.app.router.add_post("/ari/channels/{id}/dial", self._dial)
        self.app.router.add_post("/ari/channels/{id}/ring", self._ring)
        self.app.router.add_post("/ari/channels/{id}/progress", self._progress)
        self.app.router.add_get("/ari/endpoints/{tech}/{resource}", self._endpoint)

    async def stop(self) -> None:
        for task in list(self._scripts):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    # --- what a test does -------------------------------------------------------------

    def leg_ids(self) -> list[str]:
        return [o["channelId"] for o in self.creations]

    async def callee_hangs_up(self, leg_id: str) -> None:
        await self.caller_hangs_up(leg_id)  # the same events as any channel hanging up

    # --- handlers ---------------------------------------------------------------------

    async def emit_dial(self, leg_id: str, dialstatus: str) -> None:
        """A Dial event: the dialled channel is its ``peer``."""
        channel = self.channels.get(leg_id) or FakeChannel(leg_id)
        event = {"type": "Dial", "application": "loopback", "peer": channel.json()}
        event["dialstatus"] = dialstatus
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_str(json.dumps(event))

    async def _create(self, request: web.Request) -> web.Response:
        self._record(request)
        query = dict(request.query)
        body = await request.json() if request.can_read_body else {}
        self.creations.append(query)
        self.creation_bodies.append(body)
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
        variables = body.get("variables") or {}
        carrier.dialled.append((query["endpoint"], variables.get("CALLERID(all)", "")))
        if carrier.create_delay:
            await asyncio.sleep(carrier.create_delay)
        channel = FakeChannel(query["channelId"], state="Down", app_name="Stasis")
        self.channels[channel.id] = channel
        self.created_legs.append(channel.id)
        await self.emit("StasisStart", channel.id, args=query["appArgs"].split(","))
        return web.json_response(channel.json())

    async def _dial(self, request: web.Request) -> web.Response:
        self._record(request)
        channel = self._channel(request)
        self.dials.append((channel.id, dict(request.query)))
        if self.carrier.outcome == "dial_error":
            raise web.HTTPConflict(
                text=json.dumps({"message": "Channel is not in the 'Down' state"})
            )
        if self.carrier.outcome == "dial_silent":
            return web.Response(status=204)  # accepted, never started: no event follows
        task = asyncio.create_task(self._script(channel.id))
        self._scripts.add(task)
        task.add_done_callback(self._scripts.discard)
        return web.Response(status=204)

    async def _script(self, leg_id: str) -> None:
        carrier = self.carrier
        await self.emit_dial(leg_id, "")  # Asterisk called the endpoint
        await asyncio.sleep(carrier.ring_after)
        channel = self.channels.get(leg_id)
        if channel is None:
            return
        channel.state = "Ringing"
        await self.emit("ChannelStateChange", leg_id)
        if carrier.progress_after is not None:
            await asyncio.sleep(carrier.progress_after)
            if leg_id not in self.channels:
                return
            await self.emit_dial(leg_id, "PROGRESS")
        if carrier.outcome == "ring_forever":
            return
        await asyncio.sleep(carrier.answer_after)
        channel = self.channels.get(leg_id)
        if channel is None:
            return
        if carrier.outcome == "answer":
            channel.state = "Up"
            await self.emit("ChannelStateChange", leg_id)
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

    async def _progress(self, request: web.Request) -> web.Response:
        self._record(request)
        channel = self._channel(request)
        if self.progress_error:
            raise web.HTTPNotFound(text=json.dumps({"message": "Resource not found"}))
        self.progresses.append(channel.id)
        return web.Response(status=204)
