"""A small in-process ARI (HTTP + websocket) that records the REST calls it receives.

It models just enough of Asterisk for the application's tests: channels with variables,
mixing bridges, externalMedia channels backed by a real UDP socket on 127.0.0.1 (the
"Asterisk side" of the RTP stream), and the events Asterisk would emit.
"""

import asyncio
import base64
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

USERNAME = "speaqr"
PASSWORD = "secret"


@dataclass
class FakeChannel:
    id: str
    variables: dict[str, str] = field(default_factory=dict)
    state: str = "Ring"
    rtp: socket.socket | None = None
    rtp_address: tuple[str, int] | None = None
    external_host: tuple[str, int] | None = None
    # The dialplan application the channel is in, as Asterisk's snapshot shows it.
    app_name: str = ""
    app_data: str = ""

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": f"PJSIP/{self.id}",
            "state": self.state,
            "caller": {"name": "", "number": "alice"},
            "dialplan": {
                "context": "speaqr-service",
                "exten": "stasis",
                "priority": 1,
                "app_name": self.app_name,
                "app_data": self.app_data,
            },
        }
        if self.rtp_address is not None:
            host, port = self.rtp_address
            data["channelvars"] = {
                "UNICASTRTP_LOCAL_ADDRESS": host,
                "UNICASTRTP_LOCAL_PORT": str(port),
            }
        return data


class FakeAri:
    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, set[str]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.ws_connects = 0
        # GET /ari/channels answers 500 (Asterisk overloaded or ARI broken).
        self.list_error = False
        # Like Asterisk under load: an externalMedia channel's StasisStart comes this long after
        # the POST returned, and until then it cannot be added to a bridge (422).
        self.media_stasis_delay = 0.0
        self.app = web.Application()
        self.app.router.add_get("/ari/events", self._events)
        self.app.router.add_get("/ari/channels", self._list_channels)
        self.app.router.add_get("/ari/bridges", self._list_bridges)
        self.app.router.add_post("/ari/channels/externalMedia", self._external_media)
        self.app.router.add_get("/ari/channels/{id}", self._get_channel)
        self.app.router.add_delete("/ari/channels/{id}", self._hangup)
        self.app.router.add_post("/ari/channels/{id}/answer", self._answer)
        self.app.router.add_get("/ari/channels/{id}/variable", self._get_variable)
        self.app.router.add_post("/ari/bridges", self._create_bridge)
        self.app.router.add_post("/ari/bridges/{id}/addChannel", self._add_channel)
        self.app.router.add_delete("/ari/bridges/{id}", self._destroy_bridge)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.drop_websockets()
        for channel in self.channels.values():
            if channel.rtp is not None:
                channel.rtp.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def drop_websockets(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        self.sockets.clear()

    # --- what a test does -------------------------------------------------------------------

    async def caller_enters_stasis(
        self, channel_id: str, args: list[str], variables: dict[str, str]
    ) -> None:
        self.channels[channel_id] = FakeChannel(
            channel_id, dict(variables), app_name="Stasis", app_data=",".join(["loopback", *args])
        )
        await self.emit("StasisStart", channel_id, args=args)

    def leave_behind(
        self, channel_id: str, *, state: str = "Up", app_name: str = "", app_data: str = ""
    ) -> None:
        """A channel that exists without us having seen it enter (an earlier run's)."""
        self.channels[channel_id] = FakeChannel(
            channel_id, state=state, app_name=app_name, app_data=app_data
        )

    async def caller_hangs_up(self, channel_id: str, *, by_asterisk: bool = False) -> None:
        """The caller's BYE; ``by_asterisk``: Asterisk's own soft hangup (shutdown, timeout)."""
        if by_asterisk:
            await self.emit("ChannelHangupRequest", channel_id, cause=16, soft=True)
        else:
            await self.emit("ChannelHangupRequest", channel_id, cause=16)
        channel = self.channels.pop(channel_id, None)
        for members in self.bridges.values():
            members.discard(channel_id)
        await self.emit("StasisEnd", channel_id, snapshot=channel)
        await self.emit("ChannelDestroyed", channel_id, snapshot=channel, cause=16)

    async def emit(
        self, kind: str, channel_id: str, snapshot: FakeChannel | None = None, **extra: Any
    ) -> None:
        channel = snapshot or self.channels.get(channel_id) or FakeChannel(channel_id)
        event = {"type": kind, "application": "loopback", "channel": channel.json(), **extra}
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_str(json.dumps(event))

    def calls(self, method: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if method is None or r[0] == method]

    async def wait_for(self, predicate: Any, limit_s: float = 5.0) -> None:
        # Polling on purpose: some conditions change without any request reaching us.
        async with asyncio.timeout(limit_s):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    def media_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.rtp_address is not None]

    # --- handlers -------------------------------------------------------------------------

    def _record(self, request: web.Request) -> None:
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized()
        self.requests.append((request.method, request.path, dict(request.query)))

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        self._record(request)
        if request.query.get("app") != "loopback":
            raise web.HTTPBadRequest()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        self.ws_connects += 1
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
        return ws

    def _channel(self, request: web.Request) -> FakeChannel:
        channel = self.channels.get(request.match_info["id"])
        if channel is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Channel not found"}))
        return channel

    async def _list_channels(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.list_error:
            raise web.HTTPInternalServerError(text="overloaded")
        return web.json_response([c.json() for c in self.channels.values()])

    async def _list_bridges(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.json_response(
            [
                {
                    "id": bridge_id,
                    "technology": "simple_bridge",
                    "bridge_type": "mixing",
                    "bridge_class": "stasis",
                    "creator": "Stasis",
                    "name": "",
                    "channels": sorted(members),
                }
                for bridge_id, members in self.bridges.items()
            ]
        )

    async def _get_channel(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.json_response(self._channel(request).json())

    async def _answer(self, request: web.Request) -> web.Response:
        self._record(request)
        self._channel(request).state = "Up"
        return web.Response(status=204)

    async def _hangup(self, request: web.Request) -> web.Response:
        self._record(request)
        channel = self._channel(request)
        del self.channels[channel.id]
        for members in self.bridges.values():
            members.discard(channel.id)
        await self.emit("StasisEnd", channel.id, snapshot=channel)
        await self.emit("ChannelDestroyed", channel.id, snapshot=channel, cause=16)
        if channel.rtp is not None:
            channel.rtp.close()
        return web.Response(status=204)

    async def _get_variable(self, request: web.Request) -> web.Response:
        self._record(request)
        channel = self._channel(request)
        name = request.query.get("variable", "")
        if name.startswith("UNICASTRTP_") and channel.rtp_address is not None:
            return web.json_response({"value": channel.json()["channelvars"][name]})
        if name not in channel.variables:
            raise web.HTTPNotFound(text=json.dumps({"message": "Provided variable was not found"}))
        return web.json_response({"value": channel.variables[name]})

    async def _create_bridge(self, request: web.Request) -> web.Response:
        self._record(request)
        bridge_id = request.query["bridgeId"]
        self.bridges[bridge_id] = set()
        return web.json_response({"id": bridge_id, "technology": "simple_bridge", "channels": []})

    async def _add_channel(self, request: web.Request) -> web.Response:
        self._record(request)
        bridge = self.bridges.get(request.match_info["id"])
        if bridge is None:
            raise web.HTTPNotFound()
        channel_id = request.query["channel"]
        channel = self.channels.get(channel_id)
        if channel is None or (channel.rtp_address is not None and channel.app_name != "Stasis"):
            raise web.HTTPUnprocessableEntity(
                text='{"message":"Channel not in Stasis application"}'
            )
        bridge.add(channel_id)
        return web.Response(status=204)

    async def _destroy_bridge(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.bridges.pop(request.match_info["id"], None) is None:
            raise web.HTTPNotFound()
        return web.Response(status=204)

    async def _external_media(self, request: web.Request) -> web.Response:
        self._record(request)
        query = request.query
        assert query["format"] == "ulaw" and query["encapsulation"] == "rtp"
        assert query["transport"] == "udp" and query["direction"] == "both"
        host, port = query["external_host"].rsplit(":", 1)
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        rtp.setblocking(False)
        channel = FakeChannel(
            query["channelId"],
            state="Up",
            rtp=rtp,
            rtp_address=rtp.getsockname(),
            external_host=(host, int(port)),
        )
        self.channels[channel.id] = channel
        if self.media_stasis_delay:
            channel.app_name = ""
            asyncio.get_running_loop().call_later(
                self.media_stasis_delay, lambda: asyncio.ensure_future(self._enter_stasis(channel))
            )
        else:
            await self._enter_stasis(channel)
        return web.json_response(channel.json())

    async def _enter_stasis(self, channel: FakeChannel) -> None:
        channel.app_name = "Stasis"
        await self.emit("StasisStart", channel.id, args=[])
