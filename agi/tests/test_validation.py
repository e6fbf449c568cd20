"""Table-driven tests of the pure admission decision."""

from dataclasses import replace

import pytest

from speaqr_sip.causes import Refusal
from speaqr_sip.validation import Accepted, Refused, UserRow, decide

ALICE = UserRow(
    username="alice",
    email="alice@example.com",
    source_language="en-us",
    target_language="es-es",
    voice="F",
    enabled=True,
)
GOOD_LOOPBACK = {"X-Origin": "alice", "X-Destination": "test"}
GOOD_CALL = {"X-Origin": "alice", "X-Destination": "+34911234567"}
GARBAGE_2K = "A" * 2048
METACHARACTERS = ["'", ";", ",", "|", "$", "{", "}", "\n", '"', "\\", "(", ")", " ", "`", "\x00"]


def headers(base: dict[str, str], **changes: str) -> dict[str, str]:
    merged = dict(base)
    for key, value in changes.items():
        merged[key.replace("_", "-")] = value
    return merged


CASES: list[tuple[str, str, dict[str, str], str, UserRow | None, Refusal | None]] = [
    # id, service, headers, endpoint, user row, expected refusal (None = accepted)
    ("loopback ok", "loopback", GOOD_LOOPBACK, "alice", ALICE, None),
    ("call ok", "call", GOOD_CALL, "alice", ALICE, None),
    ("call ok with dial", "call", headers(GOOD_CALL, X_Dial="+14155550100"), "alice", ALICE, None),
    (
        "loopback identifier chars",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="a.b_c-d@e+f"),
        "alice",
        ALICE,
        None,
    ),
    (
        "64 chars is allowed",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="d" * 64),
        "alice",
        ALICE,
        None,
    ),
    ("unknown service", "echo", GOOD_LOOPBACK, "alice", ALICE, Refusal.UNKNOWN_SERVICE),
    ("empty service", "", GOOD_LOOPBACK, "alice", ALICE, Refusal.UNKNOWN_SERVICE),
    ("no endpoint", "loopback", GOOD_LOOPBACK, "", ALICE, Refusal.NOT_AUTHENTICATED),
    (
        "missing origin",
        "loopback",
        {"X-Destination": "test"},
        "alice",
        ALICE,
        Refusal.MISSING_HEADER,
    ),
    (
        "empty origin",
        "loopback",
        headers(GOOD_LOOPBACK, X_Origin=""),
        "alice",
        ALICE,
        Refusal.MISSING_HEADER,
    ),
    (
        "missing destination",
        "loopback",
        {"X-Origin": "alice"},
        "alice",
        ALICE,
        Refusal.MISSING_HEADER,
    ),
    (
        "missing destination on call",
        "call",
        {"X-Origin": "alice"},
        "alice",
        ALICE,
        Refusal.MISSING_HEADER,
    ),
    (
        "2 KB origin",
        "loopback",
        headers(GOOD_LOOPBACK, X_Origin=GARBAGE_2K),
        "alice",
        ALICE,
        Refusal.HEADER_TOO_LONG,
    ),
    (
        "2 KB destination",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination=GARBAGE_2K),
        "alice",
        ALICE,
        Refusal.HEADER_TOO_LONG,
    ),
    (
        "2 KB dial",
        "call",
        headers(GOOD_CALL, X_Dial=GARBAGE_2K),
        "alice",
        ALICE,
        Refusal.HEADER_TOO_LONG,
    ),
    (
        "65 chars",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="d" * 65),
        "alice",
        ALICE,
        Refusal.HEADER_TOO_LONG,
    ),
    (
        "SQL injection origin",
        "loopback",
        headers(GOOD_LOOPBACK, X_Origin="alice' OR '1'='1"),
        "alice",
        ALICE,
        Refusal.BAD_CHARACTERS,
    ),
    (
        "dialplan injection destination",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="x,1,System(rm)"),
        "alice",
        ALICE,
        Refusal.BAD_CHARACTERS,
    ),
    (
        "variable expansion",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="${SHELL}"),
        "alice",
        ALICE,
        Refusal.BAD_CHARACTERS,
    ),
    (
        "non-ascii",
        "loopback",
        headers(GOOD_LOOPBACK, X_Destination="tést"),
        "alice",
        ALICE,
        Refusal.BAD_CHARACTERS,
    ),
    (
        "mismatch",
        "loopback",
        headers(GOOD_LOOPBACK, X_Origin="bob"),
        "alice",
        ALICE,
        Refusal.ORIGIN_MISMATCH,
    ),
    (
        "mismatch by case",
        "loopback",
        headers(GOOD_LOOPBACK, X_Origin="Alice"),
        "alice",
        ALICE,
        Refusal.ORIGIN_MISMATCH,
    ),
    ("unknown user", "loopback", GOOD_LOOPBACK, "alice", None, Refusal.UNKNOWN_USER),
    (
        "row of another case",
        "loopback",
        GOOD_LOOPBACK,
        "alice",
        replace(ALICE, username="ALICE"),
        Refusal.UNKNOWN_USER,
    ),
    (
        "disabled",
        "loopback",
        GOOD_LOOPBACK,
        "alice",
        replace(ALICE, enabled=False),
        Refusal.USER_DISABLED,
    ),
    (
        "row without email",
        "loopback",
        GOOD_LOOPBACK,
        "alice",
        replace(ALICE, email=""),
        Refusal.INVALID_USER_RECORD,
    ),
    (
        "row with bad language",
        "loopback",
        GOOD_LOOPBACK,
        "alice",
        replace(ALICE, source_language="en us"),
        Refusal.INVALID_USER_RECORD,
    ),
    (
        "row with bad voice",
        "loopback",
        GOOD_LOOPBACK,
        "alice",
        replace(ALICE, voice='M"'),
        Refusal.INVALID_USER_RECORD,
    ),
    (
        "call destination not E.164",
        "call",
        headers(GOOD_CALL, X_Destination="test"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call destination without plus",
        "call",
        headers(GOOD_CALL, X_Destination="34911234567"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call destination too short",
        "call",
        headers(GOOD_CALL, X_Destination="+1234567"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call destination too long",
        "call",
        headers(GOOD_CALL, X_Destination="+1234567890123456"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call destination leading zero",
        "call",
        headers(GOOD_CALL, X_Destination="+0911234567"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call dial malformed",
        "call",
        headers(GOOD_CALL, X_Dial="+34-911"),
        "alice",
        ALICE,
        Refusal.MALFORMED_NUMBER,
    ),
    (
        "call number with metacharacters",
        "call",
        headers(GOOD_CALL, X_Destination="+34;9"),
        "alice",
        ALICE,
        Refusal.BAD_CHARACTERS,
    ),
]


@pytest.mark.parametrize(
    ("service", "hdrs", "endpoint", "row", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decision_table(
    service: str,
    hdrs: dict[str, str],
    endpoint: str,
    row: UserRow | None,
    expected: Refusal | None,
) -> None:
    decision = decide(service, hdrs, endpoint, row)
    if expected is None:
        assert isinstance(decision, Accepted), decision
    else:
        assert isinstance(decision, Refused), decision
        assert decision.reason is expected


@pytest.mark.parametrize("char", METACHARACTERS, ids=[repr(c) for c in METACHARACTERS])
@pytest.mark.parametrize("header", ["X-Origin", "X-Destination", "X-Dial"])
def test_every_metacharacter_is_refused_in_every_header(header: str, char: str) -> None:
    hdrs = dict(GOOD_LOOPBACK)
    hdrs[header] = f"ab{char}cd"
    decision = decide("loopback", hdrs, "alice", ALICE)
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.BAD_CHARACTERS


def test_refusal_detail_never_echoes_the_header_value() -> None:
    evil = "x' ; DROP TABLE users; --"
    decision = decide("loopback", headers(GOOD_LOOPBACK, X_Destination=evil), "alice", ALICE)
    assert isinstance(decision, Refused)
    assert "DROP" not in decision.detail


def test_accepted_channel_variables() -> None:
    decision = decide("call", headers(GOOD_CALL, X_Dial="+14155550100"), "alice", ALICE)
    assert isinstance(decision, Accepted)
    assert decision.channel_variables() == {
        "SPEAQR_SERVICE": "call",
        "SPEAQR_ORIGIN": "alice",
        "SPEAQR_DESTINATION": "+34911234567",
        "SPEAQR_DIAL": "+14155550100",
        "SPEAQR_EMAIL": "alice@example.com",
        "SPEAQR_SOURCE_LANGUAGE": "en-us",
        "SPEAQR_TARGET_LANGUAGE": "es-es",
        "SPEAQR_VOICE": "F",
        "SPEAQR_PROCESSOR": "",
        "SPEAQR_CHECK": "OK",
    }


def test_refused_channel_variables() -> None:
    decision = decide("loopback", {"X-Destination": "test"}, "alice", ALICE)
    assert isinstance(decision, Refused)
    assert decision.channel_variables() == {
        "SPEAQR_REFUSAL": "missing_header",
        "SPEAQR_SIP_STATUS": "400",
        "SPEAQR_HANGUP_CAUSE": "21",
        "SPEAQR_CHECK": "REFUSED",
    }


@pytest.mark.parametrize("processor", ["", "passthrough", "speaqr"])
def test_the_users_processor_reaches_the_ari_application(processor: str) -> None:
    row = replace(ALICE, processor=processor)
    decision = decide("loopback", GOOD_LOOPBACK, "alice", row)
    assert isinstance(decision, Accepted)
    assert decision.channel_variables()["SPEAQR_PROCESSOR"] == processor


def test_an_unknown_processor_in_the_users_row_is_an_invalid_record() -> None:
    row = replace(ALICE, processor="speaqr;evil")
    decision = decide("loopback", GOOD_LOOPBACK, "alice", row)
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.INVALID_USER_RECORD


@pytest.mark.parametrize("header", ["X-Origin", "X-Destination", "X-Dial"])
@pytest.mark.parametrize("service", ["loopback", "call"])
def test_a_header_sent_twice_is_refused_as_duplicate_even_when_the_first_is_valid(
    header: str, service: str
) -> None:
    hdrs = dict(GOOD_CALL if service == "call" else GOOD_LOOPBACK)
    decision = decide(service, hdrs, "alice", ALICE, repeated={header})
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.DUPLICATE_HEADER
    assert decision.disposition.sip_status == 400
    assert header in decision.detail


def test_a_duplicate_origin_wins_over_an_origin_mismatch() -> None:
    # Own username first, someone else's second: ambiguous identity, not a mismatch.
    decision = decide("loopback", GOOD_LOOPBACK, "alice", ALICE, repeated=["X-Origin"])
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.DUPLICATE_HEADER


def test_headers_repeated_outside_the_checked_three_do_not_refuse() -> None:
    decision = decide("loopback", GOOD_LOOPBACK, "alice", ALICE, repeated=["X-Other"])
    assert isinstance(decision, Accepted)
