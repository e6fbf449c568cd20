"""One call's state inside the ARI application: its channels, end signal and teardown."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from speaqr_sip.ari.client import AriClient, AriError
from speaqr_sip.ari.metrics import AppMetrics
from speaqr_sip.ari.services import CallServices
from speaqr_sip.callrecords import CAUSE_ASTERISK_HANGUP, CallAttempt, utcnow
from speaqr_sip.causes import CAUSE_NORMAL_CLEARING
from speaqr_sip.config import AriAppConfig

logger = logging.getLogger(__name__)

# Events that mean a channel of the call is going away.
END_EVENTS = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"})


class CallEnded(Exception):
    """The call ended (hangup, shutdown) while a set-up step was in progress."""


EventListener = Callable[[dict[str, Any]], None]


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """Prefix every line with the caller's channel id."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"channel={self.extra['channel'] if self.extra else '?'} {msg}", kwargs


class CallContext:
    """Owns the caller channel and every resource a flow creates for it.

    Flows register undo steps with :meth:`on_teardown`; :meth:`teardown` hangs up the
    caller (unless already gone) and runs the steps in reverse order, each isolated.
    """

    def __init__(
        self,
        *,
        channel: dict[str, Any],
        service: str,
        client: AriClient,
        config: AriAppConfig,
        routes: dict[str, "CallContext"],
        metrics: AppMetrics,
        services: CallServices | None = None,
    ) -> None:
        self.channel_id: str = str(channel.get("id", ""))
        self.channel = channel
        self.service = service
        self.client = client
        self.config = config
        self.metrics = metrics
        self.log = CallLog(logger, {"channel": self.channel_id})
        self.services = services or CallServices.from_config(config)
        # The call_records row in the making; flows fill it in, the app submits it.
        self.record = CallAttempt(service=service, channel_id=self.channel_id)
        # The SPEAQR_* channel variables the AGI check left (read by read_session).
        self.variables: dict[str, str] = {}
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.caller_gone = False
        self._answered = False
        # Called with every event of the call's channels, before the default handling.
        self.listeners: list[EventListener] = []
        self._passive: set[str] = set()
        # Q.850 cause used when we hang up the caller (34 -> 503 before answer).
        self.hangup_cause = CAUSE_NORMAL_CLEARING
        self._routes = routes
        self._owned: list[str] = []
        # Bridges this call created (or is creating): spared by the leftovers sweep.
        self.bridges: set[str] = set()
        self._teardown: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self.claim(self.channel_id)

    @property
    def answered(self) -> bool:
        return self._answered

    @answered.setter
    def answered(self, value: bool) -> None:
        if value and not self._answered:
            self.record.answered_at = utcnow()
            self._answered = value
            setup = (self.record.answered_at - self.record.started_at).total_seconds()
            self.metrics.setup_seconds.labels(self.service or "-").observe(max(setup, 0.0))
            self.record.report_progress()
        self._answered = value

    # --- channels and events ------------------------------------------------------------

    def claim(self, channel_id: str, *, ends_call: bool = True) -> None:
        """Route ``channel_id``'s events to this call (call before creating the channel).

        With ``ends_call=False`` the channel going away does not end the call by itself:
        a listener decides (the ``call`` flow's callee leg, whose cause matters).
        """
        self._routes[channel_id] = self
        self._owned.append(channel_id)
        if not ends_call:
            self._passive.add(channel_id)

    def watched_channels(self) -> list[str]:
        """Channels claimed with ``ends_call=False`` (their flow handles their end)."""
        return sorted(self._passive)

    def handle_event(self, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                self.log.exception("event listener failed on %s", event.get("type"))
        kind = event.get("type")
        if kind not in END_EVENTS:
            return
        channel_id = (event.get("channel") or {}).get("id")
        if channel_id in self._passive:
            return
        if kind == "ChannelHangupRequest" and event.get("soft") and not self.ended.is_set():
            # Asterisk itself hangs one of the call's channels up (shutdown or restart, an
            # operator's "channel request hangup", the dialplan's absolute timeout).
            self.record.set_outcome(CAUSE_ASTERISK_HANGUP)
        if channel_id == self.channel_id:
            self.caller_gone = True
            self.end(f"caller {kind}")
        else:
            self.end(f"{kind} on {channel_id}")

    def end(self, reason: str, *, caller_gone: bool = False) -> None:
        if caller_gone:
            self.caller_gone = True
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    async def guard[T](self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the call ends first (then raise :class:`CallEnded`)."""
        if self.ended.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise CallEnded(self.end_reason)
        work = asyncio.ensure_future(awaitable)
        ended = asyncio.create_task(self.ended.wait())
        try:
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise CallEnded(self.end_reason)

    # --- teardown -----------------------------------------------------------------------

    def on_teardown(self, name: str, step: Callable[[], Awaitable[object]]) -> None:
        self._teardown.append((name, step))

    async def teardown(self) -> None:
        try:
            if not self.caller_gone:
                try:
                    await self.client.hangup(self.channel_id, reason_code=self.hangup_cause)
                except AriError as exc:
                    self.log.warning("hanging up the caller failed: %s", exc)
            for name, step in reversed(self._teardown):
                try:
                    await step()
                except AriError as exc:
                    self.log.warning("teardown of %s failed: %s", name, exc)
                except Exception:
                    self.log.exception("teardown of %s failed", name)
        finally:
            self._teardown.clear()
            for channel_id in self._owned:
                if self._routes.get(channel_id) is self:
                    del self._routes[channel_id]
