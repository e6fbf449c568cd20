"""The ARI application's counters: logged periodically and at shutdown, and exposed to
Prometheus by the admin endpoint (:mod:`speaqr_sip.ari.admin`).

The integer fields are the one home of each count; the collector below exposes them as
``speaqr_ari_<field>_total``. What needs labels or buckets (calls by outcome, set-up time,
relay packets) lives in ``prometheus_client`` objects of the same registry, and what is a state
rather than a count (active calls, processors in use, call records pending, ARI connected) is
read from the application when scraped (:meth:`AppMetrics.watch`).
"""

import os
import resource
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "speaqr_ari_"
HELP = {
    "calls_started": "Calls that entered the application (StasisStart)",
    "calls_ended": "Calls whose teardown finished",
    "calls_failed": "Calls ended by an internal or ARI failure",
    "calls_refused": "Calls refused by the application (limits, policy, trunk offline, processor)",
    "speaqr_fallbacks": "Times a call was served by the fallback because Speaqr was unavailable",
    "ari_reconnects": "Reconnections of the ARI websocket",
    "leftovers_ended": "Channels and bridges of an earlier run ended at start-up",
}
# Seconds from entering the application to the call answered (call: the callee answered).
SETUP_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# A state read at scrape time: label values -> value.
Gauge = Callable[[], Mapping[tuple[str, ...], float]]


@dataclass
class AppMetrics:
    calls_started: int = 0
    calls_ended: int = 0
    calls_failed: int = 0
    calls_refused: int = 0
    speaqr_fallbacks: int = 0
    ari_reconnects: int = 0
    leftovers_ended: int = 0
    registry: CollectorRegistry = field(
        default_factory=CollectorRegistry, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.calls_by_outcome = Counter(
            f"{PREFIX}calls_by_outcome",
            "Calls ended, by service and the cause of their call record",
            ["service", "cause"],
            registry=self.registry,
        )
        self.setup_seconds = Histogram(
            f"{PREFIX}call_setup_seconds",
            "From entering the application to the call answered",
            ["service"],
            buckets=SETUP_BUCKETS,
            registry=self.registry,
        )
        self.relay_packets = Counter(
            f"{PREFIX}relay_packets",
            "Packets of the media relays of ended calls, by what happened to them",
            ["kind"],
            registry=self.registry,
        )
        self._gauges: dict[str, tuple[str, tuple[str, ...], Gauge]] = {}
        self.registry.register(_FieldsCollector(self))
        self.registry.register(_ProcessCollector())

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.type in (int, "int")}

    def as_text(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.counts().items())

    def watch(self, name: str, documentation: str, labels: tuple[str, ...], read: Gauge) -> None:
        """Expose ``speaqr_ari_<name>``, read by ``read`` at each scrape."""
        self._gauges[name] = (documentation, labels, read)

    def gauges(self) -> Iterator[Metric]:
        for name, (documentation, labels, read) in self._gauges.items():
            family = GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=list(labels))
            for values, value in read().items():
                family.add_metric(list(values), value)
            yield family


class _FieldsCollector(Collector):
    def __init__(self, metrics: AppMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, value in self._metrics.counts().items():
            yield CounterMetricFamily(f"{PREFIX}{name}", HELP.get(name, name), value=value)
        yield from self._metrics.gauges()


class _ProcessCollector(Collector):
    """The standard ``process_*`` series from what the unit's sandbox shows (ProcSubset=pid
    hides /proc/stat, which prometheus_client's own ProcessCollector needs)."""

    def collect(self) -> Iterator[Metric]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU time", value=usage.ru_utime + usage.ru_stime
        )
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            value=resident_pages * os.sysconf("SC_PAGE_SIZE"),
        )
        yield GaugeMetricFamily(
            "process_open_fds", "Open file descriptors", value=len(os.listdir("/proc/self/fd"))
        )
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        yield GaugeMetricFamily(
            "process_max_fds", "Soft limit of open file descriptors", value=soft
        )
