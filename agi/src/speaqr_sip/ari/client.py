"""Asterisk REST Interface calls the application makes, each with a timeout."""

import logging
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)


class AriError(Exception):
    """A REST call failed; ``status`` is 0 when Asterisk could not be reached."""

    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} {path} -> {status or 'unreachable'}: {text[:200]}")
        self.status = status


class AriNotFound(AriError):
    """404: the channel, bridge or variable does not exist (any more)."""


class AriClient:
    """Thin typed wrapper over ARI's REST resources (``/ari/...``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/ari"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(username, password)}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        url = self._base + path
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                text = await response.text()
                if response.status == 404:
                    raise AriNotFound(method, path, 404, text)
                if response.status >= 300:
                    raise AriError(method, path, response.status, text)
                if response.content_type == "application/json" and text:
                    return await response.json(content_type=None)
                return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AriError(method, path, 0, exc.__class__.__name__) from exc

    # --- channels -----------------------------------------------------------------------

    async def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        try:
            channel: dict[str, Any] = await self.request("GET", f"/channels/{channel_id}")
        except AriNotFound:
            return None
        return channel

    async def list_channels(self) -> list[dict[str, Any]]:
        return _items(await self.request("GET", "/channels"))

    async def get_variable(self, channel_id: str, name: str) -> str:
        """The variable's value; ``""`` when it is not set."""
        try:
            body = await self.request(
                "GET", f"/channels/{channel_id}/variable", params={"variable": name}
            )
        except AriNotFound:
            return ""
        return str(body.get("value", "")) if isinstance(body, dict) else ""

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason_code: int | None = None) -> bool:
        """Hang up; ``False`` if the channel was already gone."""
        params = {"reason_code": str(reason_code)} if reason_code is not None else None
        try:
            await self.request("DELETE", f"/channels/{channel_id}", params=params)
        except AriNotFound:
            return False
        return True

    async def external_media(
        self,
        *,
        channel_id: str,
        app: str,
        external_host: str,
        audio_format: str = "ulaw",
    ) -> dict[str, Any]:
        channel: dict[str, Any] = await self.request(
            "POST",
            "/channels/externalMedia",
            params={
                "channelId": channel_id,
                "app": app,
                "external_host": external_host,
                "format": audio_format,
                "encapsulation": "rtp",
                "transport": "udp",
                "connection_type": "client",
                "direction": "both",
            },
        )
        return channel

    # --- bridges ------------------------------------------------------------------------

    async def list_bridges(self) -> list[dict[str, Any]]:
        return _items(await self.request("GET", "/bridges"))

    async def create_bridge(self, bridge_id: str, name: str) -> None:
        await self.request(
            "POST", "/bridges", params={"type": "mixing", "bridgeId": bridge_id, "name": name}
        )

    async def add_channel(self, bridge_id: str, channel_id: str) -> None:
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channel_id}
        )

    async def destroy_bridge(self, bridge_id: str) -> bool:
        try:
            await self.request("DELETE", f"/bridges/{bridge_id}")
        except AriNotFound:
            return False
        return True

    # --- endpoints ----------------------------------------------------------------------

    async def get_endpoint(self, technology: str, resource: str) -> dict[str, Any] | None:
        """The endpoint's snapshot (``state``: online, offline or unknown); ``None`` if absent."""
        try:
            endpoint = await self.request("GET", f"/endpoints/{technology}/{resource}")
        except AriNotFound:
            return None
        return endpoint if isinstance(endpoint, dict) else None


def _items(body: Any) -> list[dict[str, Any]]:
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
