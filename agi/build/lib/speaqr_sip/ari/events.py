"""The ARI event websocket, reconnected with backoff for as long as the app runs."""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from speaqr_sip.ari.backoff import Backoff
from speaqr_sip.config import AriConnectionConfig

logger = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ConnectedHandler = Callable[[bool], Awaitable[None]]

# A connection that stayed up this long resets the backoff.
STABLE_AFTER = 10.0


def events_url(config: AriConnectionConfig) -> str:
    base = config.url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/ari/events"


class EventStream:
    """Deliver ARI events to ``on_event`` until ``stop`` is set; reconnect on any loss.

    ``on_connected(reconnected)`` runs after each successful connect, before events are
    read, so the application can reconcile the calls it knows about.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: AriConnectionConfig,
        on_event: EventHandler,
        on_connected: ConnectedHandler,
    ) -> None:
        self._session = session
        self._config = config
        self._on_event = on_event
        self._on_connected = on_connected
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        self.connected = asyncio.Event()
        self.connections = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                await self._session_once(stop)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                logger.warning("ARI websocket: %s", exc.__class__.__name__ + f" {exc}".rstrip())
            finally:
                self.connected.clear()
            if stop.is_set():
                return
            if loop.time() - started > STABLE_AFTER:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            logger.info("ARI websocket reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _session_once(self, stop: asyncio.Event) -> None:
        cfg = self._config
        async with self._session.ws_connect(
            events_url(cfg),
            params={"app": cfg.app, "subscribeAll": "false"},
            headers={"Authorization": aiohttp.encode_basic_auth(cfg.username, cfg.password)},
            heartbeat=cfg.heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_close=cfg.request_timeout),
        ) as ws:
            self.connections += 1
            logger.info(
                "ARI websocket connected (app %s, connection %d)", cfg.app, self.connections
            )
            self.connected.set()
            await self._on_connected(self.connections > 1)
            stop_wait = asyncio.create_task(stop.wait())
            try:
                while True:
                    receive = asyncio.create_task(ws.receive())
                    done, _ = await asyncio.wait(
                        {receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if stop_wait in done:
                        receive.cancel()
                        return
                    message = receive.result()
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await self._dispatch(message.data)
                    elif message.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        logger.warning("ARI websocket closed by Asterisk (%s)", message.type.name)
                        return
            finally:
                stop_wait.cancel()

    async def _dispatch(self, text: str) -> None:
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            logger.warning("ARI sent a message that is not JSON; ignored")
            return
        if not isinstance(event, dict):
            return
        try:
            await self._on_event(event)
        except Exception:
            logger.exception("handling ARI event %s failed", event.get("type"))
