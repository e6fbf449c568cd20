"""Small pure parts of the ARI application and the Speaqr wire module."""

import pytest

from speaqr_sip.ari.backoff import Backoff
from speaqr_sip.ari.events import events_url
from speaqr_sip.config import parse_ari_config
from speaqr_sip.speaqr_wire import Session, Wire


def test_backoff_grows_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(1.0, 10.0, jitter=0.2)
    first = backoff.next_delay()
    assert 0.8 <= first <= 1.2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8088", "ws://127.0.0.1:8088/ari/events"),
        ("http://127.0.0.1:8088/", "ws://127.0.0.1:8088/ari/events"),
        ("https://localhost:8089", "wss://localhost:8089/ari/events"),
    ],
)
def test_events_url(url: str, expected: str) -> None:
    assert events_url(parse_ari_config({"ari": {"url": url}}).ari) == expected


SESSION = Session("a@b.c", "alice", "test", "en-us", "es-es", "F")


def test_wire_defaults_follow_the_documented_protocol() -> None:
    wire = Wire()
    params = wire.session_params(SESSION, streaming=False)
    assert params == {
        "languageIdSource": "en-us",
        "languageIdTarget": "es-es",
        "voice": "F",
        "send": "buffer",
        "receive": "mp3",
        "email": "a@b.c",
        "origin": "alice",
        "destination": "test",
        "end": False,
    }
    assert wire.event("live_connect") == "live.connect"
    assert wire.send_audio(params, b"RIFF", end=True)["file"] == b"RIFF"
    assert Wire.connect_credentials("k", "header") == ({"x-api-key": "k"}, None)
    assert Wire.connect_credentials("k", "token") == ({}, {"token": "k"})


def test_wire_overrides_and_unknown_keys() -> None:
    wire = Wire.with_overrides({"live_connect": "session.start"}, {"email": "userEmail"})
    assert wire.event("live_connect") == "session.start"
    assert "userEmail" in wire.session_params(SESSION, streaming=True)
    with pytest.raises(ValueError, match="unknown Speaqr event name key"):
        Wire.with_overrides({"live_conect": "x"})


@pytest.mark.parametrize(
    ("ack", "ok"),
    [
        ({"success": True}, True),
        (None, True),
        ([{"success": True}], True),
        ({"success": False, "error": True, "code": "processing_failed"}, False),
        ({"error": True, "code": "x"}, False),
    ],
)
def test_ack_parsing(ack: object, ok: bool) -> None:
    assert Wire().parse_ack(ack).ok is ok


def test_tts_audio_extraction() -> None:
    wire = Wire()
    assert wire.tts_audio({"mp3": b"ID3"}) == b"ID3"
    assert wire.tts_audio({"mp3": "not bytes"}) is None
    assert wire.tts_audio("garbage") is None
