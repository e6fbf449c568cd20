"""The AGI check over a real pipe-like transport, driven by a scripted Asterisk."""

import logging
import socket
from collections.abc import Iterator

import pytest

from speaqr_sip.agi_io import StreamAGI, escape_value
from speaqr_sip.agi_session import run_check
from speaqr_sip.testing.fake_asterisk import FakeAsterisk, channel, split_agi_args
from speaqr_sip.userdb import DatabaseUnavailable
from speaqr_sip.validation import Accepted, Refused, UserRow

ALICE = UserRow("alice", "alice@example.com", "en-us", "es-es", "F", True)


class Directory:
    def __init__(self, rows: dict[str, UserRow] | None = None, *, down: bool = False) -> None:
        self.rows = rows or {}
        self.down = down
        self.queries: list[str] = []

    def lookup(self, username: str) -> UserRow | None:
        self.queries.append(username)
        if self.down:
            raise DatabaseUnavailable("connect failed: OperationalError")
        return self.rows.get(username)


@pytest.fixture
def pipes() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def converse(
    pipes: tuple[socket.socket, socket.socket], fake: FakeAsterisk, directory: Directory
) -> Accepted | Refused | None:
    ours, theirs = pipes
    fake.start(theirs.makefile("r", newline="\n"), theirs.makefile("w", newline="\n"))
    agi = StreamAGI(ours.makefile("r", newline="\n"), ours.makefile("w", newline="\n"))
    decision = run_check(agi, directory)
    ours.shutdown(socket.SHUT_WR)
    return decision


def test_accepted_call_sets_variables_and_logs_once(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, directory)
    assert isinstance(decision, Accepted)
    assert fake.set_vars["SPEAQR_CHECK"] == "OK"
    assert fake.set_vars["SPEAQR_EMAIL"] == "alice@example.com"
    assert fake.set_vars["SPEAQR_DIAL"] == ""
    assert fake.set_vars["SPEAQR_CALL_ID"] == "abc123@client"
    assert directory.queries == ["alice"]
    assert fake.commands[0] == 'GET VARIABLE "CHANNEL(pjsip,call-id)"'
    records = [r for r in caplog.records if r.name == "speaqr_sip.agi"]
    assert len(records) == 1
    assert 'call_id="abc123@client"' in records[0].getMessage()
    assert "result=OK" in records[0].getMessage()


def test_refusal_never_queries_the_database_with_garbage(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    garbage = "x' OR 1=1; --" + "A" * 2048
    env, variables = channel(headers={"X-Origin": garbage, "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, directory)
    assert isinstance(decision, Refused)
    assert directory.queries == []
    assert fake.set_vars["SPEAQR_CHECK"] == "REFUSED"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "400"
    assert fake.set_vars["SPEAQR_HANGUP_CAUSE"] == "21"
    message = caplog.records[-1].getMessage()
    assert "reason=header_too_long" in message
    assert "OR 1=1" not in message


def test_database_down_refuses_with_503(pipes: tuple[socket.socket, socket.socket]) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    decision = converse(pipes, fake, Directory(down=True))
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "503"
    assert fake.set_vars["SPEAQR_HANGUP_CAUSE"] == "34"


def test_header_too_long_for_agi_to_read_is_refused_as_too_long_not_missing(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    # Asterisk's GET VARIABLE cannot read a 2 KB header (1024-byte buffer): it answers
    # result=0, as for an absent one; the header's length says it is there.
    env, variables = channel(headers={"X-Origin": "alice"})
    variables["${LEN(${PJSIP_HEADER(read,X-Destination)})}"] = "2048"
    variables["${LEN(${PJSIP_HEADER(read,X-Dial)})}"] = "0"
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, directory)
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "header_too_long"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "400"
    assert directory.queries == []


def test_absent_header_is_still_missing(pipes: tuple[socket.socket, socket.socket]) -> None:
    env, variables = channel(headers={"X-Origin": "alice"})
    variables["${LEN(${PJSIP_HEADER(read,X-Destination)})}"] = "0"
    fake = FakeAsterisk(env, variables)
    decision = converse(pipes, fake, Directory({"alice": ALICE}))
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "missing_header"


def test_caller_without_a_registered_contact_is_refused_403_before_the_database(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    env, variables = channel(
        headers={"X-Origin": "alice", "X-Destination": "test"}, registered=False
    )
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, directory)
    assert isinstance(decision, Refused)
    assert directory.queries == []
    assert fake.set_vars["SPEAQR_REFUSAL"] == "not_registered"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "403"
    assert 'GET VARIABLE "PJSIP_AOR(alice,contact)"' in fake.commands
    message = caplog.records[-1].getMessage()
    assert 'call_id="abc123@client"' in message and "reason=not_registered" in message


def test_a_contact_on_any_of_the_endpoints_aors_is_enough(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(
        headers={"X-Origin": "alice", "X-Destination": "test"}, registered=False
    )
    variables["PJSIP_ENDPOINT(alice,aors)"] = "alice-desk, alice-mobile"
    variables["PJSIP_AOR(alice-mobile,contact)"] = "alice-mobile;@abc"
    fake = FakeAsterisk(env, variables)
    decision = converse(pipes, fake, Directory({"alice": ALICE}))
    assert isinstance(decision, Accepted)


def test_the_users_processor_is_handed_to_the_ari_application(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    row = UserRow("alice", "alice@example.com", "en-us", "es-es", "F", True, "speaqr")
    decision = converse(pipes, fake, Directory({"alice": row}))
    assert isinstance(decision, Accepted)
    assert fake.set_vars["SPEAQR_PROCESSOR"] == "speaqr"


def test_missing_configuration_refuses_with_503(pipes: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pipes
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    fake.start(theirs.makefile("r", newline="\n"), theirs.makefile("w", newline="\n"))
    agi = StreamAGI(ours.makefile("r", newline="\n"), ours.makefile("w", newline="\n"))
    decision = run_check(agi, None)
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "internal_error"


def test_fastagi_hangup_line_ends_the_check_cleanly(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables, hangup_after=2)
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, Directory({"alice": ALICE}))
    assert decision is None
    assert "result=ABANDONED" in caplog.records[-1].getMessage()


def test_header_value_with_parentheses_survives_pyst2_parsing(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "a(b)c"})
    fake = FakeAsterisk(env, variables)
    decision = converse(pipes, fake, Directory({"alice": ALICE}))
    assert isinstance(decision, Refused)
    assert decision.reason.value == "bad_characters"


def test_escape_value_round_trips_through_asterisk_argument_parsing() -> None:
    nasty = 'a "quoted" \\ value'
    assert split_agi_args(f'SET VARIABLE "X" "{escape_value(nasty)}"') == [
        "SET",
        "VARIABLE",
        "X",
        nasty,
    ]


def test_two_origins_own_name_first_are_refused_400_with_the_call_id_logged(
    pipes: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    env, variables = channel(headers={"X-Origin": ["alice", "bob"], "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    with caplog.at_level(logging.INFO, logger="speaqr_sip.agi"):
        decision = converse(pipes, fake, directory)
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "duplicate_header"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "400"
    assert directory.queries == []
    message = caplog.records[-1].getMessage()
    assert 'call_id="abc123@client"' in message
    assert "reason=duplicate_header" in message
    assert "bob" not in message


@pytest.mark.parametrize("header", ["X-Destination", "X-Dial"])
def test_a_repeated_number_header_refuses_the_call_service(
    pipes: tuple[socket.socket, socket.socket], header: str
) -> None:
    hdrs: dict[str, str | list[str]] = {"X-Origin": "alice", "X-Destination": "+34911234567"}
    hdrs[header] = ["+34911234567", "+34806123456"]
    env, variables = channel(service="call", headers=hdrs)
    decision = converse(pipes, FakeAsterisk(env, variables), Directory({"alice": ALICE}))
    assert isinstance(decision, Refused)
    assert fake_refusal(decision) == "duplicate_header"


def test_a_second_origin_too_long_to_read_is_still_a_duplicate(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": ["alice", "B" * 2048], "X-Destination": "t"})
    fake = FakeAsterisk(env, variables)
    decision = converse(pipes, fake, Directory({"alice": ALICE}))
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "duplicate_header"


def test_an_empty_second_origin_names_nobody_and_is_admitted(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": ["alice", ""], "X-Destination": "test"})
    decision = converse(pipes, FakeAsterisk(env, variables), Directory({"alice": ALICE}))
    assert isinstance(decision, Accepted)


def test_the_check_reads_the_second_instances_in_one_command(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    converse(pipes, fake, Directory({"alice": ALICE}))
    second = [c for c in fake.commands if ",2)" in c]
    assert second == [
        'GET FULL VARIABLE "${LEN(${PJSIP_HEADER(read,X-Origin,2)})},'
        "${LEN(${PJSIP_HEADER(read,X-Destination,2)})},"
        '${LEN(${PJSIP_HEADER(read,X-Dial,2)})}"'
    ]


def test_an_unreadable_duplicate_check_fails_closed_with_503(
    pipes: tuple[socket.socket, socket.socket],
) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    for key in [k for k in variables if k.startswith("${LEN(${PJSIP_HEADER(read,X-Origin,2)")]:
        del variables[key]
    fake = FakeAsterisk(env, variables)
    directory = Directory({"alice": ALICE})
    decision = converse(pipes, fake, directory)
    assert isinstance(decision, Refused)
    assert fake.set_vars["SPEAQR_REFUSAL"] == "internal_error"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "503"
    assert directory.queries == []


def fake_refusal(decision: Refused) -> str:
    return decision.reason.value
