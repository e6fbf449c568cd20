"""The admin endpoint of the ARI application (``[metrics] listen``): Prometheus ``/metrics``,
``/health/live`` (the process answers) and ``/health/ready`` (connected to ARI and to the
database: 200, else 503; the body names each check).

``/metrics`` needs HTTP basic auth when ``[metrics] username``/``password`` are set (required
off loopback); the health endpoints say only ready or not and stay open for probes.
"""

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from speaqr_sip.config import MetricsConfig

logger = logging.getLogger(__name__)

ReadyChecks = Callable[[], Awaitable[dict[str, bool]]]


def authorised(header: str, username: str, password: str) -> bool:
    """Whether an ``Authorization`` header carries these basic-auth credentials."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), username.encode()) & hmac.compare_digest(
        given.encode(), password.encode()
    )


class AdminServer:
    def __init__(
        self, config: MetricsConfig, registry: CollectorRegistry, ready_checks: ReadyChecks
    ) -> None:
        self._config = config
        self._registry = registry
        self._ready_checks = ready_checks
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        self._app = app

    async def start(self) -> int:
        """Listen on ``[metrics] listen``; returns the bound port (0 when off)."""
        address = self._config.address
        if address is None:
            return 0
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address[0], address[1])
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        logger.info(
            "admin endpoint on %s:%d (/metrics, /health/live, /health/ready)", address[0], self.port
        )
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._config.password and not authorised(
            request.headers.get("Authorization", ""), self._config.username, self._config.password
        ):
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Basic realm="speaqr-ari"'}
            )
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, request: web.Request) -> web.Response:
        checks = await self._ready_checks()
        ready = all(checks.values())
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)
