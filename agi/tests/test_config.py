"""Configuration files: defaults, overrides, and one-sentence errors."""

from pathlib import Path

import pytest

from speaqr_sip.config import (
    ConfigError,
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
