"""The call_records migration and the writers against a real, throwaway MariaDB server.

Skipped unless ``mariadbd`` and ``mariadb-install-db`` are installed (Debian: mariadb-server;
the service itself is not used: a private server runs on a Unix socket in a temp dir).
"""

import asyncio
import getpass
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest

from speaqr_sip.callrecords import (
    CLOSE_STALE_SQL,
    UPSERT_SQL,
    CallAttempt,
    CallRecord,
    RecordWriter,
    RefusalWriter,
    connection_factory,
    insert_now,
)
from speaqr_sip.causes import Refusal
from speaqr_sip.config import CallRecordsConfig, DatabaseConfig
from speaqr_sip.validation import Refused

MIGRATIONS = (
    Path(__file__).resolve().parents[2] / "roles" / "speaqr_mariadb" / "files" / "migrations"
)
SQL = MIGRATIONS / "0100_call_records.sql"
CALL_RECORDS_MIGRATIONS = sorted(MIGRATIONS.glob("01[0-9][0-9]_*.sql"))
MARIADBD = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
INSTALL_DB = shutil.which("mariadb-install-db")

pytestmark = pytest.mark.skipif(
    not (MARIADBD and INSTALL_DB), reason="mariadbd / mariadb-install-db not installed"
)

APP_USER = "speaqr_ari"
APP_PASSWORD = "app-secret"
T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def statements(migration: Path) -> list[str]:
    """The role's split: whole-line comments dropped, then one statement per ";"."""
    text = re.sub(r"(?m)^\s*--.*$", "", migration.read_text())
    return [part.strip() for part in text.split(";") if part.strip()]


def admin(sock: Path, database: str | None = None) -> Any:
    return pymysql.connect(
        unix_socket=str(sock), user=getpass.getuser(), database=database, autocommit=True
    )


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseConfig]:
    assert MARIADBD and INSTALL_DB
    base = tmp_path_factory.mktemp("mariadb")
    data, sock = base / "data", base / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [INSTALL_DB, "--no-defaults", f"--datadir={data}", "--skip-test-db", *user],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = subprocess.Popen(
        [
            MARIADBD,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={sock}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={base / 'error.log'}",
            "--skip-networking",
            "--innodb-buffer-pool-size=16M",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                admin(sock).close()
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        conn = admin(sock)
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE speaqr CHARACTER SET utf8mb4")
            cursor.execute("USE speaqr")
            cursor.execute(SQL.read_text())  # IF NOT EXISTS: applying twice is harmless
            for migration in CALL_RECORDS_MIGRATIONS:  # as the role does: each once, in order
                for statement in statements(migration):
                    cursor.execute(statement)
            cursor.execute(f"CREATE USER '{APP_USER}'@'localhost' IDENTIFIED BY '{APP_PASSWORD}'")
            cursor.execute(
                f"GRANT INSERT, SELECT, UPDATE ON speaqr.call_records TO '{APP_USER}'@'localhost'"
            )
        conn.close()
        yield DatabaseConfig(
            unix_socket=str(sock), name="speaqr", user=APP_USER, password=APP_PASSWORD
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def rows(
    db: DatabaseConfig, where: str = "1=1", args: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    conn = pymysql.connect(
        unix_socket=db.unix_socket,
        user=getpass.getuser(),
        database=db.name,
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT * FROM call_records WHERE {where} ORDER BY id", args)
            return list(cursor.fetchall())
    finally:
        conn.close()


def record(channel_id: str, **changes: Any) -> CallRecord:
    attempt = CallAttempt(service="call", channel_id=channel_id, started_at=T0)
    attempt.username = "alice"
    attempt.call_id = f"{channel_id}@client"
    attempt.destination = "+34911234567"
    attempt.dialled_number = "+34911234567"
    attempt.answered_at = T0 + timedelta(seconds=2)
    attempt.processor_used("passthrough")
    done = attempt.finish(hangup_cause=16, caller_gone=True, ended_at=T0 + timedelta(seconds=9))
    return replace(done, **changes)


def test_writer_stores_rows_of_calls_ending_together(mariadb: DatabaseConfig) -> None:
    async def scenario() -> RecordWriter:
        writer = RecordWriter.for_database(
            mariadb, CallRecordsConfig(enabled=True, batch_size=10, flush_timeout=10.0)
        )
        await writer.start()
        for i in range(40):
            writer.submit(record(f"w.{i}"))
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.written == 40 and writer.dropped == 0
    stored = rows(mariadb, "channel_id LIKE %s", ("w.%",))
    assert len(stored) == 40
    first = stored[0]
    assert first["started_at"] == T0.replace(tzinfo=None)
    assert first["answered_at"] == (T0 + timedelta(seconds=2)).replace(tzinfo=None)
    assert (first["sip_status"], first["cause"], first["processor"]) == (
        200,
        "normal",
        "passthrough",
    )
    assert first["created_at"] is not None


def test_same_attempt_twice_is_one_row(mariadb: DatabaseConfig) -> None:
    again = record("dup.1")
    connect = connection_factory(mariadb)
    insert_now(connect, again)
    insert_now(connect, again)
    assert len(rows(mariadb, "channel_id = %s", ("dup.1",))) == 1


def test_long_values_are_cut_to_fit_and_null_columns_stay_null(mariadb: DatabaseConfig) -> None:
    long = record(
        "long.1", call_id="c" * 400, destination="d" * 100, answered_at=None, processor=None
    )
    insert_now(connection_factory(mariadb), long)
    (row,) = rows(mariadb, "channel_id = %s", ("long.1",))
    assert len(row["call_id"]) == 255 and len(row["destination"]) == 64
    assert row["answered_at"] is None and row["processor"] is None


def test_refusal_writer_with_the_app_user(mariadb: DatabaseConfig) -> None:
    RefusalWriter.for_database(mariadb).record_refusal(
        Refused(Refusal.DESTINATION_NOT_ALLOWED, "X-Destination: not allowed"),
        channel_id="agi.1",
        call_id="agi@client",
        endpoint="alice",
        service="call",
        headers={"X-Origin": "alice", "X-Destination": "+34803123456", "X-Dial": ""},
        started_at=T0,
    )
    (row,) = rows(mariadb, "channel_id = %s", ("agi.1",))
    assert (row["sip_status"], row["cause"], row["dialled_number"]) == (
        403,
        "policy",
        "+34803123456",
    )


def test_the_app_user_cannot_delete_rows(mariadb: DatabaseConfig) -> None:
    conn = connection_factory(mariadb)()
    try:
        with pytest.raises(pymysql.err.OperationalError), conn.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("DELETE FROM call_records")
    finally:
        conn.close()


def test_open_row_then_final_row_with_the_app_user_and_no_reopening(
    mariadb: DatabaseConfig,
) -> None:
    attempt = CallAttempt(service="loopback", channel_id="open.1", started_at=T0)
    attempt.username = "alice"
    opened = attempt.progress()
    attempt.answered_at = T0 + timedelta(seconds=1)
    finished = attempt.finish(hangup_cause=16, caller_gone=True, ended_at=T0 + timedelta(seconds=5))

    async def scenario() -> dict[str, Any]:
        writer = RecordWriter.for_database(mariadb, CallRecordsConfig(enabled=True))
        await writer.start()
        writer.submit(opened)
        while writer.written < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        (while_open,) = rows(mariadb, "channel_id = %s", ("open.1",))
        writer.submit(finished)
        writer.submit(attempt.progress())  # a late open row changes nothing
        await writer.close()
        assert writer.dropped == 0
        return while_open

    while_open = asyncio.run(scenario())
    assert (while_open["ended_at"], while_open["sip_status"]) == (None, None)
    assert while_open["cause"] == "in_progress"
    (row,) = rows(mariadb, "channel_id = %s", ("open.1",))
    assert (row["sip_status"], row["cause"]) == (200, "normal")
    assert row["ended_at"] == (T0 + timedelta(seconds=5)).replace(tzinfo=None)
    assert row["answered_at"] == (T0 + timedelta(seconds=1)).replace(tzinfo=None)


def test_a_new_writer_closes_rows_an_earlier_run_left_open(mariadb: DatabaseConfig) -> None:
    before = datetime.now(UTC) - timedelta(hours=1)
    answered = CallAttempt(service="call", channel_id="crash.1", started_at=before)
    answered.answered_at = before + timedelta(seconds=2)
    ringing = CallAttempt(service="call", channel_id="crash.2", started_at=before)
    connect = connection_factory(mariadb)
    for open_row in (answered.progress(), ringing.progress()):
        insert_now(connect, open_row)

    async def restart() -> RecordWriter:
        writer = RecordWriter.for_database(mariadb, CallRecordsConfig(enabled=True))
        await writer.start()
        await writer.close()
        return writer

    writer = asyncio.run(restart())
    assert writer.stale_closed >= 2
    by_channel = {r["channel_id"]: r for r in rows(mariadb, "channel_id LIKE %s", ("crash.%",))}
    assert (by_channel["crash.1"]["sip_status"], by_channel["crash.1"]["cause"]) == (
        200,
        "app_restart",
    )
    assert (by_channel["crash.2"]["sip_status"], by_channel["crash.2"]["cause"]) == (
        503,
        "app_restart",
    )
    assert all(r["ended_at"] is not None for r in by_channel.values())


def test_schema_indexes(mariadb: DatabaseConfig) -> None:
    conn = admin(Path(mariadb.unix_socket), mariadb.name)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW INDEX FROM call_records")
            indexes: dict[str, list[str]] = {}
            for row in cursor.fetchall():
                indexes.setdefault(row[2], []).append(row[4])
            cursor.execute(
                "SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'call_records'",
                (mariadb.name,),
            )
            engine, collation = cursor.fetchone()
    finally:
        conn.close()
    assert indexes["call_records_user_started"] == ["username", "started_at"]
    assert indexes["call_records_attempt"] == ["attempt_id"]
    assert indexes["call_records_open"] == ["ended_at"]
    assert engine == "InnoDB" and collation.startswith("utf8mb4")


def test_select_is_needed_for_the_columns_the_writes_read(mariadb: DatabaseConfig) -> None:
    conn = admin(Path(mariadb.unix_socket))
    with conn.cursor() as cursor:
        cursor.execute("CREATE USER 'no_select'@'localhost' IDENTIFIED BY 'x'")
        cursor.execute("GRANT INSERT, UPDATE ON speaqr.call_records TO 'no_select'@'localhost'")
    conn.close()
    limited = replace(mariadb, user="no_select", password="x")
    row = CallAttempt(service="call", channel_id="nosel.1", started_at=T0).progress()
    connect = connection_factory(limited)
    insert_now(connect, row)  # the AGI check's INSERT IGNORE needs no SELECT
    for sql, args in ((UPSERT_SQL, row.as_row()), (CLOSE_STALE_SQL, (T0, T0))):
        db = connect()
        try:
            with pytest.raises(pymysql.err.OperationalError), db.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(sql, args)
        finally:
            db.close()
