"""Call records of the calls the AGI check refuses (they never reach the ARI application)."""

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from speaqr_sip.agi_check import refusal_recorder
from speaqr_sip.agi_io import StreamAGI
from speaqr_sip.agi_session import run_check
from speaqr_sip.callrecords import RefusalWriter
from speaqr_sip.config import parse_agi_config
from speaqr_sip.policy import DestinationPolicy
from speaqr_sip.testing.fake_asterisk import FakeAsterisk, channel
from speaqr_sip.userdb import DatabaseUnavailable
from speaqr_sip.validation import Accepted, Refused, UserRow
from test_callrecords import FakeDb

ALICE = UserRow("alice", "alice@example.com", "en-us", "es-es", "F", True)


class Directory:
    def __init__(self, *, down: bool = False) -> None:
        self.down = down

    def lookup(self, username: str) -> UserRow | None:
        if self.down:
            raise DatabaseUnavailable("connect failed: OperationalError")
        return ALICE if username == "alice" else None


@pytest.fixture
def pipes() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def check(
    pipes: tuple[socket.socket, socket.socket],
    db: FakeDb,
    *,
    service: str = "call",
    headers: dict[str, str],
    directory: Directory | None = None,
) -> Accepted | Refused | None:
    ours, theirs = pipes
    env, variables = channel(service=service, headers=headers)
    fake = FakeAsterisk(env, variables)
    fake.start(theirs.makefile("r", newline="\n"), theirs.makefile("w", newline="\n"))
    agi = StreamAGI(ours.makefile("r", newline="\n"), ours.makefile("w", newline="\n"))
    decision = run_check(
        agi,
        directory or Directory(),
        DestinationPolicy(("+34",), ("+34803",)),
        RefusalWriter(db.connect),
    )
    ours.shutdown(socket.SHUT_WR)
    return decision


def only_row(db: FakeDb) -> dict[str, Any]:
    assert len(db.rows) == 1
    return next(iter(db.rows.values()))


def test_policy_refusal_is_recorded(pipes: tuple[socket.socket, socket.socket]) -> None:
    db = FakeDb()
    headers = {"X-Origin": "alice", "X-Destination": "+34803123456"}
    decision = check(pipes, db, headers=headers)
    assert isinstance(decision, Refused)
    row = only_row(db)
    assert (row["service"], row["username"], row["sip_status"], row["cause"]) == (
        "call",
        "alice",
        403,
        "policy",
    )
    assert (row["destination"], row["dialled_number"]) == ("+34803123456", "+34803123456")
    assert (row["call_id"], row["channel_id"]) == ("abc123@client", "1700000000.1")
    assert row["answered_at"] is None and row["processor"] is None
    assert row["started_at"] <= row["ended_at"]


def test_malformed_number_is_recorded_without_the_garbage(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    db = FakeDb()
    decision = check(pipes, db, headers={"X-Origin": "alice", "X-Destination": "12345"})
    assert isinstance(decision, Refused)
    row = only_row(db)
    assert (row["sip_status"], row["cause"], row["dialled_number"]) == (484, "invalid_number", "")


def test_hostile_headers_never_reach_the_table(pipes: tuple[socket.socket, socket.socket]) -> None:
    db = FakeDb()
    evil = "x');DROP TABLE call_records;--"
    check(pipes, db, service="loopback", headers={"X-Origin": "alice", "X-Destination": evil})
    row = only_row(db)
    assert (row["cause"], row["destination"], row["sip_status"]) == ("bad_characters", "", 400)


def test_accepted_calls_are_left_to_the_ari_application(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    db = FakeDb()
    decision = check(pipes, db, headers={"X-Origin": "alice", "X-Destination": "+34911234567"})
    assert isinstance(decision, Accepted)
    assert db.rows == {}


def test_database_down_is_logged_not_retried(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    db = FakeDb()
    headers = {"X-Origin": "alice", "X-Destination": "+34911234567"}
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        decision = check(pipes, db, headers=headers, directory=Directory(down=True))
    assert isinstance(decision, Refused)
    assert db.connects == 0
    assert 'cause="database_unavailable"' in caplog.text


def test_insert_failure_does_not_change_the_refusal(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    db = FakeDb()
    db.down = True
    with caplog.at_level(logging.ERROR, logger="speaqr_sip.callrecords"):
        decision = check(pipes, db, headers={"X-Origin": "mallory", "X-Destination": "+3491234567"})
    assert isinstance(decision, Refused) and decision.reason.value == "origin_mismatch"
    assert "call record not written (OperationalError)" in caplog.text


def test_recorder_only_when_enabled() -> None:
    assert refusal_recorder(None) is None
    assert refusal_recorder(parse_agi_config({})) is None
    recorder = refusal_recorder(parse_agi_config({"call_records": {"enabled": True}}))
    assert isinstance(recorder, RefusalWriter)


def test_fake_db_raises_pymysql_errors() -> None:
    db = FakeDb()
    db.down = True
    with pytest.raises(pymysql.err.OperationalError):
        db.connect()
