"""What an earlier run of the application left in Asterisk, found and ended after connecting.

A process that dies mid-call (SIGKILL, OOM) leaves its callers in Stasis, its externalMedia
channels, ringing callee legs and mixing bridges behind; Asterisk keeps them as long as
nothing hangs them up. After every connection of the event websocket the application lists
channels and bridges and ends what is its own by name but is not owned by a live call:

* a channel whose dialplan application is ``Stasis(<app>,...)`` (a caller), or whose id
  starts with ``speaqr-media-`` (externalMedia, :mod:`.flows.media`) or ``speaqr-leg-``
  (callee leg, :mod:`.flows.call`);
* a bridge whose id starts with ``speaqr-`` (:func:`.flows.media.open_bridge`).

A caller that entered Stasis just before the listing shows up in it before its StasisStart
reaches us; so the sweep waits :data:`SETTLE` seconds while events keep flowing, then looks
again and spares every channel a call took meanwhile (a StasisStart routes its channel to a
call at once). Callers are hung up with cause 34
before answer (503) and 16 once answered (BYE); the whole sweep is bounded by
:func:`sweep_limit`.
"""

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from speaqr_sip.ari.client import AriClient, AriError
from speaqr_sip.causes import CAUSE_CONGESTION, CAUSE_NORMAL_CLEARING

logger = logging.getLogger(__name__)

CHANNEL_PREFIXES = ("speaqr-media-", "speaqr-leg-")
BRIDGE_PREFIX = "speaqr-"
SETTLE = 2.0


def sweep_limit(request_timeout: float) -> float:
    """Upper bound of one sweep: the settling wait and four rounds of requests."""
    return SETTLE + 4 * request_timeout


def is_ours(channel: dict[str, Any], app: str) -> bool:
    channel_id = str(channel.get("id", ""))
    if channel_id.startswith(CHANNEL_PREFIXES):
        return True
    dialplan = channel.get("dialplan") or {}
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        return False
    return str(dialplan.get("app_data", "")).split(",")[0].strip() == app


def hangup_cause(channel: dict[str, Any]) -> int:
    """34 (503) for a caller not answered yet, 16 otherwise (a BYE, or a CANCEL for a leg)."""
    channel_id = str(channel.get("id", ""))
    if channel_id.startswith(CHANNEL_PREFIXES) or channel.get("state") == "Up":
        return CAUSE_NORMAL_CLEARING
    return CAUSE_CONGESTION


@dataclass
class SweepResult:
    channels: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class LeftoverSweep:
    """One sweep over the channels and bridges Asterisk has now."""

    def __init__(
        self,
        client: AriClient,
        app: str,
        owned_channels: Callable[[], Collection[str]],
        owned_bridges: Callable[[], Collection[str]],
    ) -> None:
        self._client = client
        self._app = app
        self._owned_channels = owned_channels
        self._owned_bridges = owned_bridges

    def _strangers(self, channels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        owned = self._owned_channels()
        return [c for c in channels if is_ours(c, self._app) and c.get("id") not in owned]

    async def run(self) -> SweepResult:
        result = SweepResult()
        candidates = self._strangers(await self._client.list_channels())
        if candidates:
            await asyncio.sleep(SETTLE)
            candidates = self._strangers(candidates)
        outcomes = await asyncio.gather(
            *(self._client.hangup(str(c["id"]), hangup_cause(c)) for c in candidates),
            return_exceptions=True,
        )
        for channel, outcome in zip(candidates, outcomes, strict=True):
            self._tally(result.channels, result.failed, str(channel["id"]), outcome)
        listed = await self._client.list_bridges()
        # Owned bridges after the listing: a call registers its bridge before creating it, so
        # any bridge of a live call that the listing shows is known by now.
        owned = self._owned_bridges()
        bridges = [
            str(b["id"])
            for b in listed
            if str(b.get("id", "")).startswith(BRIDGE_PREFIX) and b.get("id") not in owned
        ]
        outcomes = await asyncio.gather(
            *(self._client.destroy_bridge(b) for b in bridges), return_exceptions=True
        )
        for bridge_id, outcome in zip(bridges, outcomes, strict=True):
            self._tally(result.bridges, result.failed, bridge_id, outcome)
        return result

    @staticmethod
    def _tally(done: list[str], failed: list[str], name: str, outcome: object) -> None:
        if isinstance(outcome, AriError):
            logger.warning("could not end %s left behind: %s", name, outcome)
            failed.append(name)
        elif isinstance(outcome, BaseException):
            raise outcome
        elif outcome:
            done.append(name)
