"""Outbound policy: prefix rules (deny by default, blocked wins), concurrency limits, config."""

from pathlib import Path

import pytest

from speaqr_sip.causes import Refusal
from speaqr_sip.config import (
    DEFAULT_BLOCKED_PREFIXES,
    ConfigError,
    PolicyConfig,
    load_agi_config,
    load_ari_config,
    parse_agi_config,
    parse_ari_config,
)
from speaqr_sip.policy import CallLimiter, DestinationPolicy
from speaqr_sip.validation import Accepted, Refused, UserRow, check_headers, decide

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ALICE = UserRow("alice", "alice@example.com", "en-us", "es-es", "F", True)


def policy(allowed: tuple[str, ...], blocked: tuple[str, ...] = ()) -> DestinationPolicy:
    return DestinationPolicy(allowed, blocked)


@pytest.mark.parametrize(
    ("allowed", "blocked", "number", "reason"),
    [
        ((), (), "+34911234567", "not_allowed"),  # deny by default
        (("+34",), (), "+34911234567", None),
        (("+34",), (), "+14155550100", "not_allowed"),
        (("+34", "+1"), (), "+14155550100", None),
        (("+34",), ("+34803",), "+34803123456", "blocked_prefix"),
        (("+34803",), ("+34803",), "+34803123456", "blocked_prefix"),  # blocked wins
        (("+348031",), ("+34803",), "+34803123456", "blocked_prefix"),  # even when longer
        (("+34",), ("+34803",), "+34813123456", None),
        (("+1",), ("+1900",), "+19005550100", "blocked_prefix"),
        (("+1",), ("+1900",), "+12125550100", None),
    ],
)
def test_destination_policy(
    allowed: tuple[str, ...], blocked: tuple[str, ...], number: str, reason: str | None
) -> None:
    violation = policy(allowed, blocked).check(number)
    assert (violation.reason if violation else None) == reason


def test_default_config_denies_every_destination_and_blocks_premium() -> None:
    config = PolicyConfig()
    assert config.allowed_prefixes == ()
    rule = DestinationPolicy.from_config(config)
    assert rule.check("+34911234567") is not None
    assert "+34803" in DEFAULT_BLOCKED_PREFIXES and "+1900" in DEFAULT_BLOCKED_PREFIXES


CALL = {"X-Origin": "alice", "X-Destination": "+34911234567"}


def test_agi_refuses_a_destination_outside_the_policy_with_403() -> None:
    decision = decide("call", CALL, "alice", ALICE, policy(("+1",)))
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.DESTINATION_NOT_ALLOWED
    assert decision.disposition.sip_status == 403
    assert decision.channel_variables()["SPEAQR_SIP_STATUS"] == "403"
    assert "X-Destination" in decision.detail and "+34911234567" not in decision.detail


def test_agi_checks_x_dial_when_present_not_x_destination() -> None:
    headers = {**CALL, "X-Dial": "+34803123456"}
    decision = decide("call", headers, "alice", ALICE, policy(("+34",), ("+34803",)))
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.DESTINATION_NOT_ALLOWED
    assert decision.detail.startswith("X-Dial")
    # X-Destination is only the logical destination: a blocked one is not dialled.
    headers = {"X-Origin": "alice", "X-Destination": "+34803123456", "X-Dial": "+34911234567"}
    decision = decide("call", headers, "alice", ALICE, policy(("+34",), ("+34803",)))
    assert isinstance(decision, Accepted)
    assert decision.dial == "+34911234567"


def test_malformed_number_is_484_before_the_policy() -> None:
    decision = decide("call", {**CALL, "X-Dial": "0034911234567"}, "alice", ALICE, policy(()))
    assert isinstance(decision, Refused)
    assert decision.reason is Refusal.MALFORMED_NUMBER
    assert decision.disposition.sip_status == 484


def test_loopback_ignores_the_call_policy() -> None:
    headers = {"X-Origin": "alice", "X-Destination": "test"}
    assert isinstance(decide("loopback", headers, "alice", ALICE, policy(())), Accepted)


def test_policy_refusal_needs_the_right_identity_first() -> None:
    checked = check_headers("call", {**CALL, "X-Origin": "bob"}, "alice", policy(()))
    assert isinstance(checked, Refused) and checked.reason is Refusal.ORIGIN_MISMATCH


# --- concurrency --------------------------------------------------------------------------


def test_limiter_per_user_and_total() -> None:
    limiter = CallLimiter(per_user=2, total=3)
    assert limiter.acquire("c1", "alice") is None
    assert limiter.acquire("c2", "alice") is None
    refused = limiter.acquire("c3", "alice")
    assert refused is not None and refused.reason == "user_limit"
    assert limiter.acquire("c4", "bob") is None
    refused = limiter.acquire("c5", "carol")
    assert refused is not None and refused.reason == "total_limit"
    assert limiter.active() == 3 and limiter.active("alice") == 2
    limiter.release("c1")
    limiter.release("c1")  # idempotent
    assert limiter.acquire("c6", "alice") is None
    assert limiter.active("alice") == 2
    assert limiter.acquire("c6", "alice") is None  # same key twice holds one slot
    assert limiter.active() == 3


def test_zero_limit_refuses_every_outbound_call() -> None:
    limiter = CallLimiter(per_user=0, total=5)
    refused = limiter.acquire("c1", "alice")
    assert refused is not None and refused.reason == "user_limit"
    assert limiter.active() == 0


# --- configuration ------------------------------------------------------------------------


def test_examples_carry_the_same_policy() -> None:
    agi = load_agi_config(EXAMPLES / "agi.toml")
    ari = load_ari_config(EXAMPLES / "ari.toml")
    assert agi.policy == ari.policy
    assert "+34" in ari.policy.allowed_prefixes
    assert ari.call.trunk_endpoint_template == "PJSIP/{number}@carrier"
    assert ari.call_records.enabled


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"policy": {"allowed_prefixes": "+34"}}, "list of strings"),
        ({"policy": {"allowed_prefixes": ["34"]}}, "is not '\\+' followed by digits"),
        ({"policy": {"blocked_prefixes": ["+34 803"]}}, "blocked_prefixes"),
        ({"policy": {"max_calls_total": -1}}, "must not be negative"),
        ({"policy": {"max_call_duration": 0}}, "max_call_duration"),
        ({"call": {"trunk_endpoint_template": "PJSIP/carrier"}}, "trunk_endpoint_template"),
        ({"call": {"trunk_endpoint_template": "{number}@carrier"}}, "trunk_endpoint_template"),
        ({"call": {"trunk_endpoint_template": "PJSIP/{number}@{x}"}}, "trunk_endpoint_template"),
        ({"call": {"number_format": "national"}}, "national_country_code"),
        ({"call": {"number_format": "local"}}, "number_format must be one of"),
        ({"call": {"callerid_policy": "fixed"}}, "callerid_number"),
        ({"call": {"callerid_number": "+34 91"}}, "callerid_number"),
        ({"call": {"callerid_name": 'A "quoted" name'}}, "callerid_name"),
        ({"call": {"answer_timeout": 0}}, "answer_timeout"),
        ({"call_records": {"queue_size": 0}}, "queue_size"),
        ({"call_records": {"retry_initial": 5.0, "retry_max": 1.0}}, "retry_initial"),
    ],
)
def test_bad_call_values(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ari_config(data)


def test_agi_config_checks_the_policy_too() -> None:
    with pytest.raises(ConfigError, match="allowed_prefixes"):
        parse_agi_config({"policy": {"allowed_prefixes": ["+34x"]}})
    assert parse_agi_config({"policy": {"allowed_prefixes": ["+34"]}}).policy.allowed_prefixes == (
        "+34",
    )


def test_ari_database_defaults_to_its_own_user() -> None:
    config = parse_ari_config({"database": {"unix_socket": "/run/mysqld/mysqld.sock"}})
    assert config.database.user == "speaqr_ari"
    assert config.database.unix_socket == "/run/mysqld/mysqld.sock"
    assert not config.call_records.enabled
