"""Call records: outcome rules, row shape, and the writer's queue/retry/flush with a fake DB."""

import asyncio
import logging
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest

from speaqr_sip.callrecords import (
    CLOSE_STALE_SQL,
    COLUMNS,
    INSERT_SQL,
    UPSERT_SQL,
    CallAttempt,
    CallRecord,
    LogSink,
    RecordWriter,
    insert_now,
)
from speaqr_sip.causes import (
    CAUSE_CALL_REJECTED,
    CAUSE_CONGESTION,
    CAUSE_NORMAL_CLEARING,
    CAUSE_USER_BUSY,
)
from speaqr_sip.config import CallRecordsConfig

MIGRATIONS = (
    Path(__file__).resolve().parents[2] / "roles" / "speaqr_mariadb" / "files" / "migrations"
)
SQL = MIGRATIONS / "0100_call_records.sql"
T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def attempt(**values: Any) -> CallAttempt:
    base: dict[str, Any] = {"service": "call", "channel_id": "1.1", "started_at": T0}
    base.update(values)
    return CallAttempt(**base)


# --- outcome rules ------------------------------------------------------------------------


def test_answered_call_is_200_normal() -> None:
    a = attempt(answered_at=T0 + timedelta(seconds=3))
    a.processor_used("passthrough")
    record = a.finish(hangup_cause=CAUSE_NORMAL_CLEARING, caller_gone=True)
    assert (record.sip_status, record.cause, record.processor) == (200, "normal", "passthrough")
    assert record.answered_at == T0 + timedelta(seconds=3)


def test_answered_call_keeps_the_flow_cause() -> None:
    a = attempt(answered_at=T0)
    a.set_outcome("max_duration")
    a.set_outcome("normal")  # first outcome wins
    assert a.finish(hangup_cause=16, caller_gone=False).cause == "max_duration"


def test_caller_cancel_before_answer_is_487() -> None:
    record = attempt().finish(hangup_cause=CAUSE_NORMAL_CLEARING, caller_gone=True)
    assert (record.sip_status, record.cause, record.processor) == (487, "caller_cancelled", None)


def test_flow_outcome_before_answer_with_status() -> None:
    a = attempt()
    a.set_outcome("busy", 486)
    record = a.finish(hangup_cause=CAUSE_USER_BUSY, caller_gone=True)
    assert (record.sip_status, record.cause) == (486, "busy")


@pytest.mark.parametrize(
    ("cause", "status", "text"),
    [
        (CAUSE_CONGESTION, 503, "unavailable"),
        (CAUSE_CALL_REJECTED, 403, "rejected"),
        (99, 603, "error"),
    ],
)
def test_refusal_without_flow_outcome_uses_the_hangup_cause(
    cause: int, status: int, text: str
) -> None:
    record = attempt().finish(hangup_cause=cause, caller_gone=False)
    assert (record.sip_status, record.cause) == (status, text)


def test_speaqr_wins_over_passthrough_in_the_processor_column() -> None:
    a = attempt()
    a.processor_used("passthrough")
    a.processor_used("speaqr")
    assert a.processor == "speaqr"


def test_row_is_cut_to_column_sizes_and_naive_utc() -> None:
    local = datetime(2030, 1, 2, 4, 4, 5, tzinfo=UTC).astimezone()
    record = attempt(call_id="x" * 300, username="alice", started_at=local).finish(
        hangup_cause=16, caller_gone=True, ended_at=T0
    )
    row = dict(zip(COLUMNS, record.as_row(), strict=True))
    assert len(row["call_id"]) == 255
    assert row["started_at"] == datetime(2030, 1, 2, 4, 4, 5)
    assert row["ended_at"].tzinfo is None
    assert row["answered_at"] is None
    assert INSERT_SQL.count("%s") == len(COLUMNS)


def test_schema_file_declares_every_column() -> None:
    sql = SQL.read_text()
    added = "".join(p.read_text() for p in sorted(MIGRATIONS.glob("01*_call_records_*.sql")))
    for column in (*COLUMNS, "id", "created_at"):
        assert f"\n  {column} " in sql or f"ADD COLUMN {column} " in added, column
    assert "ENGINE=InnoDB" in sql and "utf8mb4" in sql
    assert "KEY call_records_user_started (username, started_at)" in sql
    assert "UNIQUE KEY call_records_attempt (attempt_id)" in sql


def test_log_sink_logs_the_whole_record(caplog: pytest.LogCaptureFixture) -> None:
    record = attempt(username="alice").finish(hangup_cause=16, caller_gone=True, ended_at=T0)
    with caplog.at_level(logging.INFO, logger="speaqr_sip.callrecords"):
        LogSink().submit(record)
    assert 'username="alice"' in caplog.text and 'cause="caller_cancelled"' in caplog.text


# --- the writer ---------------------------------------------------------------------------


class FakeDb:
    """Committed rows keyed by attempt_id (the UNIQUE key), with scripted failures.

    It applies the three statements as MariaDB would: INSERT IGNORE keeps the first row, the
    upsert replaces an open row but never a finished one, the close ends the open rows
    started before its time."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.inserts = 0
        self.closes = 0
        self.connects = 0
        self.down = False
        self.fail_commits = 0
        self.lose_ack_once = False
        self.bad_usernames: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()

    def apply(self, query: str, args: tuple[Any, ...]) -> None:
        if query == CLOSE_STALE_SQL:
            self.closes += 1
            ended_at, before = args
            for row in self.rows.values():
                if row["ended_at"] is None and row["started_at"] < before:
                    row["sip_status"] = 503 if row["answered_at"] is None else 200
                    row["cause"] = "app_restart"
                    row["ended_at"] = ended_at
            return
        self.inserts += 1
        row = dict(zip(COLUMNS, args, strict=True))
        stored = self.rows.get(row["attempt_id"])
        if stored is None or (query == UPSERT_SQL and stored["ended_at"] is None):
            self.rows[row["attempt_id"]] = row

    def connect(self) -> "FakeConnection":
        self.connects += 1
        if self.down:
            raise pymysql.err.OperationalError(2002, "Can't connect")
        return FakeConnection(self)


class FakeCursor:
    def __init__(self, conn: "FakeConnection") -> None:
        self.conn = conn

    def __enter__(self) -> "FakeCursor":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        assert query in (INSERT_SQL, UPSERT_SQL)
        db = self.conn.db
        if db.down:
            raise pymysql.err.OperationalError(2013, "Lost connection")
        for row in args:
            if row[COLUMNS.index("username")] in db.bad_usernames:
                raise pymysql.err.DataError(1406, "Data too long")
            self.conn.pending.append((query, tuple(row)))

    def execute(self, query: str, args: Sequence[Any]) -> int:
        assert query == CLOSE_STALE_SQL
        db = self.conn.db
        if db.down:
            raise pymysql.err.OperationalError(2013, "Lost connection")
        self.conn.pending.append((query, tuple(args)))
        ended_at, before = args
        return sum(
            1 for r in db.rows.values() if r["ended_at"] is None and r["started_at"] < before
        )


class FakeConnection:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.pending: list[tuple[str, tuple[Any, ...]]] = []
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        db = self.db
        if db.delay:
            threading.Event().wait(db.delay)
        if db.fail_commits > 0:
            db.fail_commits -= 1
            self.pending.clear()
            raise pymysql.err.OperationalError(2006, "MySQL server has gone away")
        with db.lock:
            for query, args in self.pending:
                db.apply(query, args)
        self.pending.clear()
        if db.lose_ack_once:
            db.lose_ack_once = False
            raise pymysql.err.OperationalError(2013, "Lost connection during commit")

    def rollback(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        self.closed = True


def make_record(i: int, username: str = "alice") -> CallRecord:
    return attempt(channel_id=f"1.{i}", username=username).finish(
        hangup_cause=16, caller_gone=True, ended_at=T0
    )


def writer(db: FakeDb, **config: Any) -> RecordWriter:
    values: dict[str, Any] = {
        "enabled": True,
        "retry_initial": 0.01,
        "retry_max": 0.05,
        "flush_timeout": 2.0,
    }
    values.update(config)
    return RecordWriter(db.connect, CallRecordsConfig(**values), call_timeout=2.0)


async def wait_until(predicate: Any, limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


pytestmark_async = pytest.mark.asyncio


@pytestmark_async
async def test_calls_ending_together_lose_no_row() -> None:
    db = FakeDb()
    w = writer(db, batch_size=7)
    await w.start()

    async def one_call(i: int) -> None:
        await asyncio.sleep(0)
        w.submit(make_record(i))

    await asyncio.gather(*(one_call(i) for i in range(300)))
    await wait_until(lambda: len(db.rows) == 300)
    await w.close()
    assert w.written == 300 and w.dropped == 0
    assert db.connects == 1  # one kept connection


@pytestmark_async
async def test_database_down_then_back_keeps_rows_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDb()
    db.down = True
    w = writer(db)
    await w.start()
    with caplog.at_level(logging.INFO, logger="speaqr_sip.callrecords"):
        for i in range(5):
            w.submit(make_record(i))
        await wait_until(lambda: w.retries >= 3)
        assert not db.rows
        db.down = False
        await wait_until(lambda: len(db.rows) == 5)
        await w.close()
    assert w.dropped == 0
    assert caplog.text.count("database write failed") == 1  # not one line per retry
    assert "database writes work again" in caplog.text


@pytestmark_async
async def test_lost_acknowledgement_does_not_duplicate() -> None:
    db = FakeDb()
    w = writer(db)
    await w.start()
    await wait_until(lambda: db.closes == 1)
    db.lose_ack_once = True
    w.submit(make_record(1))
    w.submit(make_record(2))
    await wait_until(lambda: w.written == 2)
    await w.close()
    assert db.inserts == 4  # the batch went in twice...
    assert len(db.rows) == 2  # ...but the unique attempt_id kept one row each
    assert w.retries == 1


@pytestmark_async
async def test_commit_failure_retries_the_whole_batch() -> None:
    db = FakeDb()
    db.fail_commits = 2
    w = writer(db)
    await w.start()
    for i in range(3):
        w.submit(make_record(i))
    await wait_until(lambda: len(db.rows) == 3)
    await w.close()
    assert w.retries == 2 and w.dropped == 0


@pytestmark_async
async def test_a_row_the_table_rejects_is_logged_and_the_others_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDb()
    db.bad_usernames = {"mallory"}
    w = writer(db)
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        for i in range(4):
            w.submit(make_record(i, "mallory" if i == 2 else "alice"))
        await w.start()
        await wait_until(lambda: w.written == 3)
        await w.close()
    assert len(db.rows) == 3 and w.dropped == 1
    assert 'username="mallory"' in caplog.text and "DataError" in caplog.text


@pytestmark_async
async def test_full_queue_logs_the_record_instead_of_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDb()
    w = writer(db, queue_size=2)
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        for i in range(3):
            w.submit(make_record(i))
    assert w.dropped == 1 and 'channel_id="1.2"' in caplog.text
    await w.start()
    await w.close()
    assert len(db.rows) == 2


@pytestmark_async
async def test_close_flushes_what_is_queued() -> None:
    db = FakeDb()
    db.delay = 0.02
    w = writer(db, batch_size=2)
    await w.start()
    for i in range(10):
        w.submit(make_record(i))
    await w.close()
    assert len(db.rows) == 10 and w.dropped == 0


@pytestmark_async
async def test_close_with_database_down_logs_every_unwritten_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDb()
    db.down = True
    w = writer(db, flush_timeout=0.3, retry_initial=5.0, retry_max=10.0)
    await w.start()
    for i in range(3):
        w.submit(make_record(i))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        await w.close()
    # The long backoff is cut short by close(), which gives up after flush_timeout.
    assert loop.time() - started < 2.0
    assert w.dropped == 3
    for i in range(3):
        assert f'channel_id="1.{i}"' in caplog.text
    w.submit(make_record(9))  # after close: logged, not queued
    assert w.dropped == 4


def test_insert_now_writes_one_row_and_closes() -> None:
    db = FakeDb()
    connections: list[FakeConnection] = []

    def connect() -> FakeConnection:
        conn = db.connect()
        connections.append(conn)
        return conn

    insert_now(connect, make_record(1))
    assert len(db.rows) == 1 and connections[0].closed
    db.down = True
    with pytest.raises(pymysql.err.OperationalError):
        insert_now(connect, make_record(2))


# --- durable rows: open while the call lasts, closed by the next run after a crash -------


def test_the_open_row_has_no_end_no_status_and_cause_in_progress() -> None:
    call = attempt(username="alice", dialled_number="+34911234567")
    row = call.progress()
    assert row.is_open and row.sip_status is None and row.cause == "in_progress"
    assert (row.attempt_id, row.username, row.dialled_number) == (
        call.attempt_id,
        "alice",
        "+34911234567",
    )
    assert not call.finish(hangup_cause=16, caller_gone=True).is_open


def test_progress_goes_to_the_observer_only_when_there_is_one() -> None:
    seen: list[CallRecord] = []
    call = attempt()
    call.report_progress()
    call.observer = seen.append
    call.report_progress()
    assert [r.cause for r in seen] == ["in_progress"]


def test_the_upsert_never_changes_a_finished_row_and_sets_ended_at_last() -> None:
    assignments = re.split(r", (?=\w+ = IF)", UPSERT_SQL.split("ON DUPLICATE KEY UPDATE ")[1])
    assert assignments[-1] == "ended_at = IF(ended_at IS NULL, VALUES(ended_at), ended_at)"
    columns = {a.split(" = ")[0] for a in assignments}
    assert columns == set(COLUMNS) - {"attempt_id"}
    assert all(" = IF(ended_at IS NULL, VALUES(" in a for a in assignments)


def open_row(db: FakeDb, attempt_id: str, *, answered: bool) -> None:
    started = datetime(2020, 1, 1, 12, 0, 0)
    db.rows[attempt_id] = {
        **dict.fromkeys(COLUMNS),
        "attempt_id": attempt_id,
        "started_at": started,
        "answered_at": started + timedelta(seconds=3) if answered else None,
        "cause": "in_progress",
    }


@pytestmark_async
async def test_open_then_answered_then_final_leave_one_finished_row() -> None:
    db = FakeDb()
    w = writer(db)
    await w.start()
    call = attempt(started_at=datetime.now(UTC))
    w.submit(call.progress())
    await wait_until(lambda: call.attempt_id in db.rows)
    assert db.rows[call.attempt_id]["ended_at"] is None
    call.answered_at = datetime.now(UTC)
    w.submit(call.progress())
    w.submit(call.finish(hangup_cause=16, caller_gone=True))
    await wait_until(lambda: db.rows[call.attempt_id]["ended_at"] is not None)
    await w.close()
    row = db.rows[call.attempt_id]
    assert (row["sip_status"], row["cause"]) == (200, "normal") and len(db.rows) == 1


@pytestmark_async
async def test_a_late_open_row_does_not_reopen_a_finished_one() -> None:
    db = FakeDb()
    w = writer(db)
    await w.start()
    call = attempt(started_at=datetime.now(UTC))
    w.submit(call.finish(hangup_cause=16, caller_gone=True))
    w.submit(call.progress())
    await wait_until(lambda: w.written == 2)
    await w.close()
    assert db.rows[call.attempt_id]["cause"] == "caller_cancelled"


@pytestmark_async
async def test_on_start_rows_an_earlier_run_left_open_are_closed_as_app_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDb()
    open_row(db, "a" * 32, answered=True)
    open_row(db, "b" * 32, answered=False)
    w = writer(db)
    ours = attempt(started_at=datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="speaqr_sip.callrecords"):
        w.submit(ours.progress())
        await w.start()
        await wait_until(lambda: w.written == 1)
        await w.close()
    assert (db.rows["a" * 32]["sip_status"], db.rows["a" * 32]["cause"]) == (200, "app_restart")
    assert (db.rows["b" * 32]["sip_status"], db.rows["b" * 32]["cause"]) == (503, "app_restart")
    assert db.rows["a" * 32]["ended_at"] is not None
    assert db.rows[ours.attempt_id]["ended_at"] is None  # this run's call stays open
    assert "closed 2 row(s) an earlier run left open" in caplog.text


@pytestmark_async
async def test_database_down_at_start_the_close_waits_and_rows_queue_behind_it() -> None:
    db = FakeDb()
    db.down = True
    open_row(db, "c" * 32, answered=False)
    w = writer(db)
    await w.start()
    call = attempt(started_at=datetime.now(UTC))
    w.submit(call.progress())  # never blocks while the database is down
    await wait_until(lambda: w.retries >= 2)
    assert w.pending == 1
    db.down = False
    await wait_until(lambda: call.attempt_id in db.rows)
    await w.close()
    assert db.rows["c" * 32]["cause"] == "app_restart" and w.dropped == 0


@pytestmark_async
async def test_an_open_row_that_cannot_be_queued_is_logged_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = writer(FakeDb(), queue_size=1)
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        w.submit(make_record(1))
        w.submit(attempt(channel_id="1.7", username="bob").progress())
    assert w.dropped == 1
    assert 'channel_id="1.7"' in caplog.text and 'cause="in_progress"' in caplog.text
    await w.start()
    await w.close()


def test_the_record_says_which_processor_served_which_part() -> None:
    call = attempt(answered_at=T0 + timedelta(seconds=1))
    call.processor_used("speaqr", part="caller->callee", at=T0 + timedelta(seconds=0.5))
    call.processor_used("speaqr", part="callee->caller", at=T0 + timedelta(seconds=0.5))
    call.processor_used("passthrough", part="callee->caller", at=T0 + timedelta(seconds=7.25))
    record = call.finish(hangup_cause=16, caller_gone=True, ended_at=T0 + timedelta(seconds=9))
    assert record.processor == "speaqr"
    assert record.processor_parts == (
        "caller->callee:speaqr@0.50 callee->caller:speaqr@0.50 callee->caller:passthrough@7.25"
    )
    assert call.progress().processor_parts == record.processor_parts
