"""Call records: one ``call_records`` row per call attempt.

Schema: ``roles/speaqr_mariadb/files/migrations/0100_call_records.sql``.

* :class:`CallAttempt` -- mutable, one per call; the ARI application creates it when the
  caller enters Stasis and the flows fill it in (who, what number, answer time, cause).
* :class:`CallRecord` -- an immutable row: open (``ended_at`` NULL, cause ``in_progress``)
  while the call lasts, finished once it ended.
* Sinks: :class:`RecordWriter` (MariaDB; one writer task, a bounded asyncio queue, PyMySQL
  in a single worker thread, retries with backoff, final flush on shutdown),
  :class:`MemorySink` (tests) and :class:`LogSink` (records disabled: one log line each).
* :class:`RefusalWriter` -- the AGI check's refusals (calls that never reach the ARI
  application), one synchronous INSERT each.

Durability (the ARI application): the row is written open when the call is admitted (the
AGI check's variables read), written again when it is answered, and finished when it ends
-- each time the whole row, as an upsert on the unique ``attempt_id`` that never changes a
finished row. So a crash leaves an open row instead of nothing, and on start-up the writer
first closes the rows an earlier run left open (cause ``app_restart``, ended at the restart).

A row that cannot be written (queue full, database down past the shutdown flush, data the
table rejects) is logged in full at ERROR level, so it can still be recovered from the
journal. Every write is idempotent (``attempt_id`` is unique), so a retry after a lost
acknowledgement never duplicates a row.

Cause vocabulary (``cause`` column): ``normal`` (answered, then hung up), ``caller_cancelled``
(caller hung up before answer, 487), ``busy`` (486), ``no_answer`` (480), ``rejected`` (403),
``not_found`` (404), ``invalid_number`` (484), ``unavailable`` (503: carrier down, congestion,
dial failure), ``policy`` (403: destination not allowed or a concurrency limit),
``processor_failed`` (Speaqr failed and ``[processor] fallback = "hangup"``),
``max_duration``, ``unchecked`` (reached Stasis without a passed AGI check), ``error``
(internal or ARI failure, 503), ``shutdown``, ``in_progress`` (open row: the call is not over),
``asterisk_hangup`` (Asterisk hung the caller up itself: a shutdown or restart, an operator,
the absolute timeout), ``app_restart`` (the application died during the call; the next run
closed the row: 200 if it was answered, else 503); AGI refusals use the refusal reason
(``missing_header``, ``origin_mismatch``, ``unknown_user``, ...).
"""

import asyncio
import contextlib
import dataclasses
import importlib
import itertools
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Protocol

from speaqr_sip.ari.backoff import Backoff
from speaqr_sip.causes import (
    CAUSE_CALL_REJECTED,
    CAUSE_CONGESTION,
    CAUSE_INTERWORKING,
    CAUSE_INVALID_NUMBER_FORMAT,
    CAUSE_NO_ANSWER,
    CAUSE_NORMAL_CLEARING,
    CAUSE_UNALLOCATED,
    CAUSE_USER_BUSY,
    Refusal,
    sip_status_for_cause,
)
from speaqr_sip.config import CallRecordsConfig, DatabaseConfig
from speaqr_sip.logsetup import safe
from speaqr_sip.validation import (
    E164_RE,
    HEADER_DESTINATION,
    HEADER_DIAL,
    IDENTIFIER_RE,
    Refused,
    dialled_number,
)

logger = logging.getLogger(__name__)

SIP_OK = 200
SIP_REQUEST_TERMINATED = 487

# Column sizes of the call_records migration (roles/speaqr_mariadb/files/migrations/);
# longer values are cut before the INSERT.
COLUMN_LIMITS = {
    "attempt_id": 32,
    "channel_id": 64,
    "call_id": 255,
    "username": 64,
    "service": 16,
    "destination": 64,
    "dialled_number": 32,
    "cause": 32,
    "processor": 16,
    "processor_parts": 255,
}
COLUMNS = (
    "attempt_id",
    "channel_id",
    "call_id",
    "username",
    "service",
    "destination",
    "dialled_number",
    "started_at",
    "answered_at",
    "ended_at",
    "sip_status",
    "cause",
    "processor",
    "processor_parts",
)
# The AGI check's refusals (written once, complete). IGNORE: a retried row whose first INSERT
# did commit (lost acknowledgement) hits the unique attempt_id and is skipped. Values are cut to
# the column sizes before, so IGNORE hides nothing else.
INSERT_SQL = (
    f"INSERT IGNORE INTO call_records ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
)
# The ARI application's rows: the whole row each time; a finished row (ended_at set) is never
# changed again. ended_at comes last: MariaDB assigns left to right, so every IF before it still
# sees the stored ended_at.
_UPSERTED = [c for c in COLUMNS if c not in ("attempt_id", "ended_at")] + ["ended_at"]
UPSERT_SQL = (
    f"INSERT INTO call_records ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{c} = IF(ended_at IS NULL, VALUES({c}), {c})" for c in _UPSERTED)
)
CAUSE_IN_PROGRESS = "in_progress"
CAUSE_APP_RESTART = "app_restart"
CAUSE_ASTERISK_HANGUP = "asterisk_hangup"
# Rows an earlier run left open: started before this run, never ended.
CLOSE_STALE_SQL = (
    "UPDATE call_records SET sip_status = IF(answered_at IS NULL, 503, 200), "
    f"cause = '{CAUSE_APP_RESTART}', ended_at = %s "
    "WHERE ended_at IS NULL AND started_at < %s"
)

# The cause text when the call ended because we hung the caller up with this Q.850 cause.
CAUSE_TEXT = {
    CAUSE_UNALLOCATED: "not_found",
    CAUSE_USER_BUSY: "busy",
    CAUSE_NO_ANSWER: "no_answer",
    CAUSE_CALL_REJECTED: "rejected",
    CAUSE_INVALID_NUMBER_FORMAT: "invalid_number",
    CAUSE_CONGESTION: "unavailable",
    CAUSE_INTERWORKING: "error",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CallRecord:
    attempt_id: str
    channel_id: str
    call_id: str
    username: str
    service: str
    destination: str
    dialled_number: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    sip_status: int | None
    cause: str
    processor: str | None
    # Which processor served which part: "speaqr@0.41 passthrough@5.02" (seconds after
    # started_at), each entry prefixed with its direction in the call service.
    processor_parts: str = ""

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def as_row(self) -> tuple[Any, ...]:
        """Parameters for :data:`INSERT_SQL`: strings cut to size, times naive UTC."""
        values: list[Any] = []
        for name in COLUMNS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.astimezone(UTC).replace(tzinfo=None)
            elif isinstance(value, str) and name in COLUMN_LIMITS:
                value = value[: COLUMN_LIMITS[name]]
            values.append(value)
        return tuple(values)

    def as_log(self) -> str:
        """The whole record on one line (for the journal when it cannot be written)."""
        parts = []
        for key, value in asdict(self).items():
            if isinstance(value, datetime):
                text = value.astimezone(UTC).isoformat(timespec="milliseconds")
            else:
                text = "" if value is None else str(value)
            parts.append(f"{key}={safe(text, 255)}")
        return " ".join(parts)


@dataclass
class CallAttempt:
    """What is known about one call so far; :meth:`finish` turns it into a record."""

    service: str
    channel_id: str
    started_at: datetime = field(default_factory=utcnow)
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    call_id: str = ""
    username: str = ""
    destination: str = ""
    dialled_number: str = ""
    answered_at: datetime | None = None
    # (direction or "", processor, seconds after started_at) per session, in the order started.
    parts: list[tuple[str, str, float]] = field(default_factory=list)
    # Set by a flow when it knows why the call ends (with the SIP status before answer).
    cause: str = ""
    sip_status: int | None = None
    # Told of the open row at each step (admitted, answered); the ARI app's record sink.
    observer: Callable[[CallRecord], None] | None = field(default=None, repr=False)

    def report_progress(self) -> None:
        if self.observer is not None:
            self.observer(self.progress())

    def progress(self) -> CallRecord:
        """The open row: what is known so far, no end, cause ``in_progress``."""
        return dataclasses.replace(
            self.finish(hangup_cause=0, caller_gone=False),
            ended_at=None,
            sip_status=None,
            cause=CAUSE_IN_PROGRESS,
        )

    def set_outcome(self, cause: str, sip_status: int | None = None) -> None:
        """Record why the call ends; the first outcome set wins."""
        if not self.cause:
            self.cause = cause
            self.sip_status = sip_status

    def processor_used(self, name: str, *, part: str = "", at: datetime | None = None) -> None:
        """``name`` serves the call (or its direction ``part``) from ``at`` (default now) on."""
        offset = ((at or utcnow()) - self.started_at).total_seconds()
        self.parts.append((part, name, max(offset, 0.0)))

    @property
    def processors(self) -> list[str]:
        """The processors used, each once, in the order they started."""
        return list(dict.fromkeys(name for _part, name, _at in self.parts))

    @property
    def current_processor(self) -> str | None:
        return self.parts[-1][1] if self.parts else None

    @property
    def processor(self) -> str | None:
        """``speaqr`` when any direction used Speaqr, ``passthrough`` or ``None`` otherwise."""
        if "speaqr" in self.processors:
            return "speaqr"
        return self.processors[0] if self.processors else None

    def finish(
        self, *, hangup_cause: int, caller_gone: bool, ended_at: datetime | None = None
    ) -> CallRecord:
        """The final row. ``caller_gone``: the caller hung up before we ended the call;
        ``hangup_cause``: the Q.850 cause we hung the caller up with otherwise."""
        if self.answered_at is not None:
            status = SIP_OK
            cause = self.cause or "normal"
        elif self.cause:
            status = self.sip_status or sip_status_for_cause(hangup_cause)
            cause = self.cause
        elif caller_gone:
            status, cause = SIP_REQUEST_TERMINATED, "caller_cancelled"
        else:
            status = sip_status_for_cause(hangup_cause)
            if hangup_cause == CAUSE_NORMAL_CLEARING:
                cause = "normal"
            else:
                cause = CAUSE_TEXT.get(hangup_cause, "error")
        return CallRecord(
            attempt_id=self.attempt_id,
            channel_id=self.channel_id,
            call_id=self.call_id,
            username=self.username,
            service=self.service,
            destination=self.destination,
            dialled_number=self.dialled_number,
            started_at=self.started_at,
            answered_at=self.answered_at,
            ended_at=ended_at or utcnow(),
            sip_status=status,
            cause=cause,
            processor=self.processor,
            processor_parts=" ".join(
                f"{part + ':' if part else ''}{name}@{at:.2f}" for part, name, at in self.parts
            ),
        )


# --- sinks ------------------------------------------------------------------------------


class RecordSink(Protocol):
    """Where finished records go. ``submit`` never blocks and never raises."""

    def submit(self, record: CallRecord) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """Whether the records' store answers now (no store: always)."""
        ...


class MemorySink:
    """Keeps records in a list (unit tests)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.progress: list[CallRecord] = []

    def submit(self, record: CallRecord) -> None:
        (self.progress if record.is_open else self.records).append(record)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True


class LogSink:
    """Records disabled: each record becomes one INFO line instead of a row."""

    def submit(self, record: CallRecord) -> None:
        level = logging.DEBUG if record.is_open else logging.INFO
        logger.log(level, "call record (not stored): %s", record.as_log())

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True


class Cursor(Protocol):
    def execute(self, query: str, args: Sequence[Any]) -> int: ...

    def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> Any: ...

    def __enter__(self) -> "Cursor": ...

    def __exit__(self, *exc: object) -> Any: ...


class Connection(Protocol):
    """The part of a PyMySQL connection the writer uses (a fake in tests)."""

    def cursor(self) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


def _driver() -> ModuleType:
    return importlib.import_module("pymysql")


def connection_factory(config: DatabaseConfig) -> Callable[[], Connection]:
    """Open a PyMySQL connection with the configured socket/host and timeouts."""

    def connect() -> Connection:
        kwargs: dict[str, Any] = {
            "user": config.user,
            "password": config.password,
            "database": config.name,
            "connect_timeout": config.connect_timeout,
            "read_timeout": config.read_timeout,
            "write_timeout": config.read_timeout,
            "charset": "utf8mb4",
            "autocommit": False,
        }
        if config.unix_socket:
            kwargs["unix_socket"] = config.unix_socket
        else:
            kwargs["host"] = config.host
            kwargs["port"] = config.port
        conn: Connection = _driver().connect(**kwargs)
        return conn

    return connect


# --- the AGI check's refusals -------------------------------------------------------------

# Refusal reason -> cause column (the others keep the reason's own name).
REFUSAL_CAUSES = {
    Refusal.DESTINATION_NOT_ALLOWED: "policy",
    Refusal.MALFORMED_NUMBER: "invalid_number",
}


def _clean(value: str, pattern: re.Pattern[str], limit: int) -> str:
    """``value`` when it passes the header syntax, else ``""`` (no garbage in the table)."""
    return value if len(value) <= limit and pattern.fullmatch(value) else ""


def refusal_record(
    decision: Refused,
    *,
    channel_id: str,
    call_id: str,
    endpoint: str,
    service: str,
    headers: Mapping[str, str],
    started_at: datetime,
) -> CallRecord:
    """The row of a call the AGI check refused (it never reaches the ARI application)."""
    svc = _clean(service, IDENTIFIER_RE, COLUMN_LIMITS["service"])
    destination = _clean(headers.get(HEADER_DESTINATION, ""), IDENTIFIER_RE, 64)
    dial = _clean(headers.get(HEADER_DIAL, ""), IDENTIFIER_RE, 64)
    number = dialled_number(destination, dial)
    return CallRecord(
        attempt_id=uuid.uuid4().hex,
        channel_id=_clean(channel_id, IDENTIFIER_RE, COLUMN_LIMITS["channel_id"]),
        call_id=call_id,
        username=_clean(endpoint, IDENTIFIER_RE, COLUMN_LIMITS["username"]),
        service=svc,
        destination=destination,
        dialled_number=number if svc == "call" and E164_RE.fullmatch(number) else "",
        started_at=started_at,
        answered_at=None,
        ended_at=utcnow(),
        sip_status=decision.disposition.sip_status,
        cause=REFUSAL_CAUSES.get(decision.reason, decision.reason.value),
        processor=None,
    )


class RefusalWriter:
    """The AGI check's recorder: one synchronous INSERT per refusal on a fresh connection
    (the ``[database]`` timeouts bound it). A failure is logged with the whole record and
    never changes the refusal itself."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect

    @classmethod
    def for_database(cls, database: DatabaseConfig) -> "RefusalWriter":
        return cls(connection_factory(database))

    def record_refusal(
        self,
        decision: Refused,
        *,
        channel_id: str,
        call_id: str,
        endpoint: str,
        service: str,
        headers: dict[str, str],
        started_at: datetime,
    ) -> None:
        try:
            record = refusal_record(
                decision,
                channel_id=channel_id,
                call_id=call_id,
                endpoint=endpoint,
                service=service,
                headers=headers,
                started_at=started_at,
            )
        except Exception:
            logger.exception("call record of a refusal could not be built")
            return
        if decision.reason is Refusal.DATABASE_UNAVAILABLE:
            # Known down: do not make the caller wait for a second connect timeout.
            logger.error("call record not written (database unavailable): %s", record.as_log())
            return
        try:
            insert_now(self._connect, record)
        except Exception as exc:
            logger.error(
                "call record not written (%s): %s", exc.__class__.__name__, record.as_log()
            )


def insert_now(connect: Callable[[], Connection], record: CallRecord) -> None:
    """Insert one record synchronously (AGI check); raises the driver's error on failure."""
    conn = connect()
    try:
        with conn.cursor() as cursor:
            cursor.executemany(INSERT_SQL, [record.as_row()])
        conn.commit()
    finally:
        conn.close()


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class CloseStale:
    """Close the rows an earlier run left open: those started before ``before`` (this run's
    start), ended at ``before``."""

    before: datetime

    def args(self) -> tuple[datetime, datetime]:
        return _naive(self.before), _naive(self.before)

    def as_log(self) -> str:
        return f"close rows left open, started before {self.before.isoformat()}"


Write = CallRecord | CloseStale


class RecordWriter:
    """A single writer task that drains a bounded queue into MariaDB.

    It first closes the rows an earlier run left open (:class:`CloseStale`, retried like any
    write); rows submitted meanwhile wait in the queue.

    PyMySQL is blocking, so every database call runs in one dedicated worker thread (the
    connection is never shared between threads). Transient errors (connection lost,
    server gone, table missing, permission denied) keep the batch and retry it with
    exponential backoff; a row the table rejects as data (``DataError``/``IntegrityError``)
    is logged in full and dropped so it cannot block the others. ``close`` flushes what is
    queued for at most ``flush_timeout`` seconds, then logs whatever is left.
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        config: CallRecordsConfig,
        *,
        call_timeout: float = 10.0,
    ) -> None:
        self._connect = connect
        self._config = config
        self._call_timeout = call_timeout
        self._queue: asyncio.Queue[CallRecord] = asyncio.Queue(config.queue_size)
        self._since = utcnow()
        self._stale_done = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-records")
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Write] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failing = False
        self.written = 0
        self.dropped = 0
        self.retries = 0
        self.stale_closed = 0

    @classmethod
    def for_database(cls, database: DatabaseConfig, config: CallRecordsConfig) -> "RecordWriter":
        timeout = database.connect_timeout + 2 * database.read_timeout + 1.0
        return cls(connection_factory(database), config, call_timeout=timeout)

    # --- producer side ----------------------------------------------------------------

    def submit(self, record: CallRecord) -> None:
        if self._closing and self._task is None:
            self._lost(record, "writer closed")
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._lost(record, f"queue full ({self._config.queue_size})")

    def _lost(self, record: Write, why: str) -> None:
        if isinstance(record, CloseStale):
            logger.warning(
                "call records: rows left open stay open (%s); the next start closes them", why
            )
            return
        self.dropped += 1
        logger.error("call record not written (%s): %s", why, record.as_log())

    @property
    def pending(self) -> int:
        return self._queue.qsize() + sum(isinstance(w, CallRecord) for w in self._inflight)

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="call-records-writer")

    async def close(self) -> None:
        """Flush for at most ``flush_timeout`` seconds, then stop; log what is left."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(self._flushed(), timeout=self._config.flush_timeout)
            except TimeoutError:
                logger.warning(
                    "call records: %d row(s) still pending after %.1f s",
                    self.pending,
                    self._config.flush_timeout,
                )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        for record in self._inflight:
            self._lost(record, "shutdown before the database accepted it")
        self._inflight = []
        while not self._queue.empty():
            self._lost(self._queue.get_nowait(), "shutdown before it was written")
            self._queue.task_done()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._drop), 2.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "call records writer stopped: written=%d dropped=%d retries=%d",
            self.written,
            self.dropped,
            self.retries,
        )

    async def ping(self, within: float = 2.0) -> bool:
        """``SELECT 1`` on the writer's connection, in its thread (so after a write in
        progress): ``False`` when the database does not answer within ``timeout``."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._ping), within)
        except Exception:
            return False
        return True

    def _ping(self) -> None:
        try:
            with self._connection().cursor() as cursor:
                cursor.execute("SELECT 1", ())
        except BaseException:
            self._drop()
            raise

    async def _flushed(self) -> None:
        await self._stale_done.wait()
        await self._queue.join()

    # --- writer task ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self._config.retry_initial, self._config.retry_max)
        stale: list[Write] = [CloseStale(self._since)]
        self._inflight = stale
        await self._write_until_done(stale, backoff)
        self._inflight = []
        self._stale_done.set()
        if self.stale_closed:
            logger.warning(
                "call records: closed %d row(s) an earlier run left open (cause %s)",
                self.stale_closed,
                CAUSE_APP_RESTART,
            )
        while True:
            first = await self._queue.get()
            batch: list[Write] = [first]
            while len(batch) < self._config.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = batch
            try:
                await self._write_until_done(batch, backoff)
            finally:
                # Cancelled (close): self._inflight stays for close() to log.
                for _ in batch:
                    self._queue.task_done()
            self._inflight = []

    async def _write_until_done(self, batch: list[Write], backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        driver = _driver()
        while True:
            try:
                rejected = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, self._insert, batch),
                    timeout=self._call_timeout,
                )
            except (driver.MySQLError, OSError, TimeoutError) as exc:
                self.retries += 1
                delay = 0.05 if self._closing else backoff.next_delay()
                level = logging.WARNING if not self._failing else logging.DEBUG
                logger.log(
                    level,
                    "call records: database write failed (%s); %d row(s) kept, retrying in %.1f s",
                    exc.__class__.__name__,
                    self.pending,
                    delay,
                )
                self._failing = True
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue
            except Exception:
                # A bug must not stop the writer: log these rows and go on with the next.
                logger.exception("call records: unexpected failure writing %d row(s)", len(batch))
                for record in batch:
                    self._lost(record, "unexpected writer failure")
                return
            if self._failing:
                logger.info("call records: database writes work again")
                self._failing = False
            backoff.reset()
            for record, exc_name in rejected:
                self._lost(record, f"rejected by the database: {exc_name}")
            self.written += sum(isinstance(w, CallRecord) for w in batch) - len(rejected)
            return

    # --- worker thread ----------------------------------------------------------------

    def _insert(self, batch: list[Write]) -> list[tuple[Write, str]]:
        """Insert ``batch`` in one transaction; rows the table rejects are returned."""
        driver = _driver()
        row_errors = (driver.err.DataError, driver.err.IntegrityError)
        conn = self._connection()
        try:
            self._execute(conn, batch)
            return []
        except row_errors:
            self._rollback(conn)
        except BaseException:
            self._drop()
            raise
        # One row is bad: find it by inserting them one at a time.
        rejected: list[tuple[Write, str]] = []
        for record in batch:
            try:
                self._execute(conn, [record])
            except row_errors as exc:
                self._rollback(conn)
                rejected.append((record, exc.__class__.__name__))
            except BaseException:
                self._drop()
                raise
        return rejected

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _execute(self, conn: Connection, batch: list[Write]) -> None:
        closed = 0
        with conn.cursor() as cursor:
            for is_close, group in itertools.groupby(
                batch, key=lambda w: isinstance(w, CloseStale)
            ):
                writes = list(group)
                if is_close:
                    for close in writes:
                        if isinstance(close, CloseStale):
                            closed += int(cursor.execute(CLOSE_STALE_SQL, close.args()) or 0)
                else:
                    rows = [w.as_row() for w in writes if isinstance(w, CallRecord)]
                    cursor.executemany(UPSERT_SQL, rows)
        conn.commit()
        if closed:
            self.stale_closed = closed

    @staticmethod
    def _rollback(conn: Connection) -> None:
        with contextlib.suppress(Exception):
            conn.rollback()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
