"""Event routing, one isolated task per call, reconciliation after reconnects, shutdown."""

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from speaqr_sip.ari.admin import AdminServer
from speaqr_sip.ari.call import CallContext, CallEnded
from speaqr_sip.ari.client import AriClient, AriError
from speaqr_sip.ari.events import EventStream
from speaqr_sip.ari.flows import FLOWS, Flow
from speaqr_sip.ari.leftovers import LeftoverSweep, sweep_limit
from speaqr_sip.ari.metrics import AppMetrics
from speaqr_sip.ari.services import CallServices, record_sink
from speaqr_sip.callrecords import CAUSE_ASTERISK_HANGUP, RecordSink
from speaqr_sip.causes import CAUSE_CONGESTION
from speaqr_sip.config import AriAppConfig
from speaqr_sip.processors import selected_kind

logger = logging.getLogger(__name__)

METRICS_INTERVAL = 300.0
# Services whose calls get a call_records row.
RECORDED_SERVICES = frozenset({"loopback", "call"})


class AriApplication:
    def __init__(
        self,
        config: AriAppConfig,
        session: aiohttp.ClientSession,
        flows: dict[str, type[Flow]] | None = None,
        records: RecordSink | None = None,
    ) -> None:
        self.config = config
        self.client = AriClient(
            session,
            config.ari.url,
            config.ari.username,
            config.ari.password,
            timeout=config.ari.request_timeout,
        )
        self.flows = flows if flows is not None else FLOWS
        self.metrics = AppMetrics()
        self.services = CallServices.from_config(config)
        self.records = records if records is not None else record_sink(config)
        self.routes: dict[str, CallContext] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._sweep_task: asyncio.Task[None] | None = None
        self.events = EventStream(session, config.ari, self.on_event, self.on_connected)
        self.admin = AdminServer(config.metrics, self.metrics.registry, self.ready_checks)
        self._watch_state()

    @property
    def calls(self) -> list[CallContext]:
        """Active calls (each once)."""
        return list({id(ctx): ctx for ctx in self.routes.values()}.values())

    # --- what the admin endpoint shows ---------------------------------------------------

    def _watch_state(self) -> None:
        def active_calls() -> dict[tuple[str, ...], float]:
            counts: dict[tuple[str, ...], float] = {}
            for ctx in self.calls:
                key = (ctx.service or "-",)
                counts[key] = counts.get(key, 0) + 1
            return counts

        def processors() -> dict[tuple[str, ...], float]:
            counts: dict[tuple[str, ...], float] = {}
            for ctx in self.calls:
                current = ctx.record.current_processor
                if current is not None:
                    counts[(current,)] = counts.get((current,), 0) + 1
            return counts

        def pending() -> dict[tuple[str, ...], float]:
            return {(): float(getattr(self.records, "pending", 0))}

        watch = self.metrics.watch
        watch("active_calls", "Calls in progress, by service", ("service",), active_calls)
        watch(
            "processors_in_use",
            "Calls in progress by the processor serving them now",
            ("processor",),
            processors,
        )
        watch("call_records_pending", "Call records waiting for the database", (), pending)
        watch(
            "ari_connected",
            "1 while the ARI websocket is connected",
            (),
            lambda: {(): float(self.events.connected.is_set())},
        )

    async def ready_checks(self) -> dict[str, bool]:
        return {"ari": self.events.connected.is_set(), "database": await self.records.ping()}

    # --- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        logger.info(
            "ARI application %s starting (processor %s, fallback %s)",
            self.config.ari.app,
            selected_kind(self.config),
            self.config.processor.fallback,
        )
        await self.records.start()
        await self.admin.start()
        reporter = asyncio.create_task(self._report_metrics(stop))
        try:
            await self.events.run(stop)
        finally:
            reporter.cancel()
            try:
                await self.shutdown()
            finally:
                await self.admin.close()
                await self.records.close()

    async def shutdown(self) -> None:
        await self._stop_sweep()
        calls = self.calls
        if calls:
            logger.info("shutting down: hanging up %d active call(s)", len(calls))
        for ctx in calls:
            ctx.record.set_outcome("shutdown")
            if not ctx.answered:
                ctx.hangup_cause = CAUSE_CONGESTION  # 503 rather than 603 before answer
            ctx.end("application shutdown")
        if self.tasks:
            _done, pending = await asyncio.wait(
                set(self.tasks), timeout=self.config.ari.shutdown_timeout
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        logger.info("ARI application stopped: %s", self.metrics.as_text())

    async def _report_metrics(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=METRICS_INTERVAL)
            logger.info("metrics: active_calls=%d %s", len(self.calls), self.metrics.as_text())

    # --- events -------------------------------------------------------------------------

    async def on_connected(self, reconnected: bool) -> None:
        if reconnected:
            await self._reconcile_calls()
        await self._start_sweep()

    async def _reconcile_calls(self) -> None:
        self.metrics.ari_reconnects += 1
        for ctx in self.calls:
            try:
                alive = await self.client.get_channel(ctx.channel_id)
            except AriError as exc:
                ctx.log.warning("could not check the channel after reconnecting: %s", exc)
                continue
            if alive is None:
                ctx.record.set_outcome(CAUSE_ASTERISK_HANGUP)  # Asterisk lost it (crash, restart)
                ctx.end("channel vanished while ARI was disconnected", caller_gone=True)
                continue
            await self._reconcile_watched(ctx)

    async def _reconcile_watched(self, ctx: CallContext) -> None:
        """Channels a flow watches itself (the call's callee leg): tell it which vanished."""
        for channel_id in ctx.watched_channels():
            try:
                alive = await self.client.get_channel(channel_id)
            except AriError as exc:
                ctx.log.warning("could not check %s after reconnecting: %s", channel_id, exc)
                continue
            if alive is None:
                ctx.log.info("%s vanished while ARI was disconnected", channel_id)
                ctx.handle_event(
                    {"type": "ChannelDestroyed", "channel": {"id": channel_id}, "cause": 0}
                )

    # --- what an earlier run left behind ------------------------------------------------

    def owned_bridges(self) -> set[str]:
        return {bridge for ctx in self.calls for bridge in ctx.bridges}

    async def _start_sweep(self) -> None:
        """Sweep in the background: events must flow meanwhile (see :mod:`.leftovers`)."""
        await self._stop_sweep()
        sweep = LeftoverSweep(
            self.client, self.config.ari.app, lambda: self.routes, self.owned_bridges
        )
        self._sweep_task = asyncio.create_task(self._run_sweep(sweep), name="leftovers")

    async def _stop_sweep(self) -> None:
        task, self._sweep_task = self._sweep_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_sweep(self, sweep: LeftoverSweep) -> None:
        limit = sweep_limit(self.config.ari.request_timeout)
        try:
            async with asyncio.timeout(limit):
                result = await sweep.run()
        except TimeoutError:
            logger.warning(
                "ending what an earlier run left behind took over %.0f s; gave up", limit
            )
            return
        except AriError as exc:
            logger.warning("could not list channels and bridges left behind: %s", exc)
            return
        if result.channels or result.bridges or result.failed:
            logger.warning(
                "left behind by an earlier run: hung up %d channel(s) %s, destroyed %d bridge(s)"
                " %s, %d failed %s",
                len(result.channels),
                ",".join(result.channels) or "-",
                len(result.bridges),
                ",".join(result.bridges) or "-",
                len(result.failed),
                ",".join(result.failed) or "-",
            )
        self.metrics.leftovers_ended += len(result.channels) + len(result.bridges)

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        # A Dial event names the dialled channel "peer" (the call service's callee leg).
        channel = event.get("peer" if kind == "Dial" else "channel") or {}
        channel_id = channel.get("id")
        if not isinstance(channel_id, str):
            return
        ctx = self.routes.get(channel_id)
        if kind == "StasisStart" and ctx is None:
            # Our own channels (externalMedia, the call service's callee leg) are routed
            # already and their StasisStart goes to their call below.
            args = event.get("args") or []
            self.start_call(channel, [str(a) for a in args])
        elif ctx is not None:
            ctx.handle_event(event)

    def start_call(self, channel: dict[str, Any], args: list[str]) -> None:
        service = args[0] if args else ""
        ctx = CallContext(
            channel=channel,
            service=service,
            client=self.client,
            config=self.config,
            routes=self.routes,
            metrics=self.metrics,
            services=self.services,
        )
        if service in RECORDED_SERVICES:
            ctx.record.observer = self.records.submit
        self.metrics.calls_started += 1
        task = asyncio.create_task(self._run_call(ctx), name=f"call-{ctx.channel_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_call(self, ctx: CallContext) -> None:
        """Run one call; whatever happens stays inside this task."""
        caller = (ctx.channel.get("caller") or {}).get("number", "")
        ctx.log.info("StasisStart service=%s caller=%s", ctx.service or "-", caller or "-")
        flow_class = self.flows.get(ctx.service)
        try:
            if flow_class is None:
                ctx.log.error("no flow for service %r; refused (503)", ctx.service)
                self.metrics.calls_refused += 1
                ctx.hangup_cause = CAUSE_CONGESTION
            else:
                await flow_class().run(ctx)
        except CallEnded:
            pass
        except AriError as exc:
            if not ctx.ended.is_set():
                self.metrics.calls_failed += 1
                ctx.log.warning("call failed: %s", exc)
                ctx.hangup_cause = CAUSE_CONGESTION
                ctx.record.set_outcome("error")
        except Exception:
            self.metrics.calls_failed += 1
            ctx.log.exception("call failed")
            ctx.hangup_cause = CAUSE_CONGESTION
            ctx.record.set_outcome("error")
        finally:
            ctx.end(ctx.end_reason or "flow finished")
            await asyncio.shield(self._teardown(ctx))

    async def _teardown(self, ctx: CallContext) -> None:
        caller_gone = ctx.caller_gone  # before our own hangup makes it true
        try:
            await ctx.teardown()
        except Exception:
            ctx.log.exception("teardown failed")
        self.metrics.calls_ended += 1
        ctx.log.info("call ended: %s", ctx.end_reason)
        if ctx.service not in RECORDED_SERVICES:
            return  # no user call (orphan callee leg, unknown Stasis argument): logged only
        try:
            record = ctx.record.finish(hangup_cause=ctx.hangup_cause, caller_gone=caller_gone)
            ctx.log.info(
                "call record: service=%s sip_status=%d cause=%s",
                record.service or "-",
                record.sip_status,
                record.cause,
            )
            self.records.submit(record)
            self.metrics.calls_by_outcome.labels(record.service, record.cause).inc()
        except Exception:
            ctx.log.exception("call record failed")
