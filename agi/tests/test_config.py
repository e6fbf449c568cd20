"""Configuration files: defaults, overrides, and one-sentence errors."""

from pathlib import Path

import pytest

from speaqr_sip.config import (
    ConfigError,
    ServiceLimits,
    load_agi_config,
    load_ari_config,
    parse_ari_config,
    resolve_path,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_files_load() -> None:
    agi = load_agi_config(EXAMPLES / "agi.toml")
    assert agi.database.connect_timeout == 2.0
    ari = load_ari_config(EXAMPLES / "ari.toml")
    assert ari.ari.app == "loopback"
    assert ari.processor.fallback == "passthrough"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_agi_config(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[ari\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_ari_config(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ari": {"pasword": "x"}}, r"unknown key\(s\) pasword in \[ari\]"),
        ({"aris": {}}, "unknown key"),
        ({"ari": {"request_timeout": "5"}}, "ari.request_timeout must be a number"),
        ({"media": {"inbound_queue_frames": 1.5}}, "must be an integer"),
        ({"processor": {"kind": "magic"}}, "processor.kind must be one of"),
        ({"speaqr": {"chunk_ms": 30}}, "multiple of 20"),
        ({"speaqr": {"events": {"live_connect": 3}}}, "table of strings"),
        ({"ari": {"reconnect_initial": 0}}, "reconnect_initial"),
        ({"speaqr": {"stall_timeout": 0}}, "stall_timeout must be positive"),
        ({"speaqr": {"stall_timeout": 6.0}}, "at most speaqr.ack_timeout"),
        ({"metrics": {"listen": "9102"}}, "metrics.listen must be HOST:PORT"),
        (
            {"metrics": {"listen": "0.0.0.0:9102"}},
            "not on loopback: set metrics.username and password",
        ),
        ({"metrics": {"listen": "127.0.0.1:9102", "username": "u"}}, "go together"),
    ],
)
def test_bad_values(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ari_config(data)


def test_partial_section_keeps_other_defaults() -> None:
    config = parse_ari_config({"speaqr": {"api_key": "k"}})
    assert config.speaqr.api_key == "k"
    assert config.speaqr.chunk_ms == 200


def test_resolve_path(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Path("/etc/x.toml")
    monkeypatch.delenv("SPEAQR_TEST_CFG", raising=False)
    assert resolve_path(None, "SPEAQR_TEST_CFG", default) == default
    monkeypatch.setenv("SPEAQR_TEST_CFG", "/tmp/env.toml")
    assert resolve_path(None, "SPEAQR_TEST_CFG", default) == Path("/tmp/env.toml")
    assert resolve_path("/tmp/arg.toml", "SPEAQR_TEST_CFG", default) == Path("/tmp/arg.toml")


def test_the_loopback_limits_default_to_two_per_user_fifty_in_total_one_hour() -> None:
    limits = parse_ari_config({}).policy.limits("loopback")
    assert limits == ServiceLimits(max_calls_per_user=2, max_calls_total=50, max_call_duration=3600)
    # The call service keeps its own keys.
    assert parse_ari_config({}).policy.limits("call").max_calls_total == 10


@pytest.mark.parametrize(
    ("loopback", "words"),
    [
        ({"max_calls_total": -1}, "policy.loopback.max_calls_per_user and max_calls_total"),
        ({"max_call_duration": 0}, "policy.loopback.max_call_duration"),
        ({"max_calls": 3}, "unknown key(s) max_calls in [policy.loopback]"),
    ],
)
def test_bad_loopback_limits_are_refused_at_start_up(loopback: dict[str, int], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_ari_config({"policy": {"loopback": loopback}})
    assert words in str(err.value)


def test_metrics_off_loopback_with_credentials_are_accepted() -> None:
    config = parse_ari_config(
        {"metrics": {"listen": "10.0.0.5:9102", "username": "u", "password": "p"}}
    )
    assert config.metrics.address == ("10.0.0.5", 9102)
