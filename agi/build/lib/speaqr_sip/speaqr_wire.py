"""Every detail of Speaqr's real-time Socket.IO protocol, in one place.

Source: ``shared/docs/speaqr-api.md`` (public developer pages and the earlier SDK); the
event and field names of the live service are unconfirmed, so each one can be
overridden from ``[speaqr.events]`` / ``[speaqr.fields]`` in ``ari.toml`` without a code
change. The adapter (:mod:`speaqr_sip.processors.speaqr`) and the stand-in server
(:mod:`speaqr_sip.testing.fake_speaqr`) both speak through this module.

Flow used by the adapter:

1. Socket.IO v4 connect to ``url`` (path ``socketio_path``), authenticated either with
   the HTTP header ``x-api-key`` (``auth_style = "header"``) or with
   ``auth = {token: <key>}`` (``auth_style = "token"``). A bad key is refused with
   ``connect_error`` ``{code: "bad_authentication"}``.
2. ``live.connect`` (with acknowledgement) carrying the session parameters: languages,
   voice, send/receive modes, plus the caller's email, origin and destination.
3. Audio up, every ``chunk_ms``: ``send_audio`` = session parameters + ``file`` (a
   complete mono PCM16 WAV file) + ``end``; or, in ``stream`` mode,
   ``connect_stream`` once, ``write_stream`` {file} per chunk, ``disconnect_stream``.
4. Audio down: ``text_to_speech`` {languageIdTarget, translation, mp3}.
   ``speech_to_text`` / ``translation`` are informational. ``error`` and
   ``socket_server_disconnected`` mean the session is lost.
5. Acknowledgement errors look like ``{success: false, error: true, code, description}``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

API_KEY_HEADER = "x-api-key"
AUTH_TOKEN_KEY = "token"
SEND_BUFFER = "buffer"
SEND_STREAMING = "streaming"
RECEIVE_MP3 = "mp3"
BAD_AUTHENTICATION = "bad_authentication"

DEFAULT_EVENTS: Mapping[str, str] = MappingProxyType(
    {
        "live_connect": "live.connect",
        "send_audio": "send_audio",
        "connect_stream": "connect_stream",
        "write_stream": "write_stream",
        "disconnect_stream": "disconnect_stream",
        "speech_to_text": "speech_to_text",
        "translation": "translation",
        "text_to_speech": "text_to_speech",
        "server_connected": "socket_server_connected",
        "server_disconnected": "socket_server_disconnected",
        "error": "error",
    }
)

DEFAULT_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "source_language": "languageIdSource",
        "target_language": "languageIdTarget",
        "send": "send",
        "receive": "receive",
        "voice": "voice",
        "end": "end",
        "file": "file",
        "mp3": "mp3",
        "email": "email",
        "origin": "origin",
        "destination": "destination",
        "transcription": "transcription",
        "translation": "translation",
        "success": "success",
        "error": "error",
        "code": "code",
        "description": "description",
    }
)


@dataclass(frozen=True, slots=True)
class Session:
    """What Speaqr is told about one call's audio stream."""

    email: str
    origin: str
    destination: str
    source_language: str
    target_language: str
    voice: str


@dataclass(frozen=True, slots=True)
class AckResult:
    ok: bool
    code: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Wire:
    """Event and field names, defaults overridden by configuration."""

    events: Mapping[str, str] = field(default_factory=lambda: DEFAULT_EVENTS)
    fields: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FIELDS)

    @classmethod
    def with_overrides(
        cls, events: Mapping[str, str] | None = None, fields: Mapping[str, str] | None = None
    ) -> "Wire":
        for given, defaults, kind in (
            (events or {}, DEFAULT_EVENTS, "event"),
            (fields or {}, DEFAULT_FIELDS, "field"),
        ):
            unknown = sorted(set(given) - set(defaults))
            if unknown:
                raise ValueError(f"unknown Speaqr {kind} name key(s): {', '.join(unknown)}")
        return cls(
            events=MappingProxyType({**DEFAULT_EVENTS, **(events or {})}),
            fields=MappingProxyType({**DEFAULT_FIELDS, **(fields or {})}),
        )

    def event(self, key: str) -> str:
        return self.events[key]

    def name(self, key: str) -> str:
        return self.fields[key]

    # --- client -> server -------------------------------------------------------------

    @staticmethod
    def connect_credentials(
        api_key: str, style: Literal["header", "token"]
    ) -> tuple[dict[str, str], dict[str, str] | None]:
        """HTTP headers and Socket.IO ``auth`` payload for the connect request."""
        if style == "header":
            return {API_KEY_HEADER: api_key}, None
        return {}, {AUTH_TOKEN_KEY: api_key}

    def session_params(self, session: Session, *, streaming: bool) -> dict[str, Any]:
        f = self.name
        return {
            f("source_language"): session.source_language,
            f("target_language"): session.target_language,
            f("voice"): session.voice,
            f("send"): SEND_STREAMING if streaming else SEND_BUFFER,
            f("receive"): RECEIVE_MP3,
            f("email"): session.email,
            f("origin"): session.origin,
            f("destination"): session.destination,
            f("end"): False,
        }

    def send_audio(self, params: Mapping[str, Any], wav: bytes, *, end: bool) -> dict[str, Any]:
        return {**params, self.name("file"): wav, self.name("end"): end}

    def write_stream(self, wav: bytes) -> dict[str, Any]:
        return {self.name("file"): wav}

    # --- server -> client -------------------------------------------------------------

    def parse_ack(self, ack: Any) -> AckResult:
        """An acknowledgement is a failure only when it says so explicitly."""
        if isinstance(ack, list | tuple) and ack:
            ack = ack[0]
        if isinstance(ack, Mapping) and (
            ack.get(self.name("success")) is False or ack.get(self.name("error")) is True
        ):
            return AckResult(
                False,
                str(ack.get(self.name("code"), "")),
                str(ack.get(self.name("description"), "")),
            )
        return AckResult(True)

    def tts_audio(self, payload: Any) -> bytes | None:
        """The MP3 bytes of a ``text_to_speech`` event, or ``None`` if absent."""
        if not isinstance(payload, Mapping):
            return None
        mp3 = payload.get(self.name("mp3"))
        if isinstance(mp3, bytes | bytearray | memoryview):
            return bytes(mp3)
        return None

    def error_text(self, payload: Any) -> str:
        if isinstance(payload, Mapping):
            return (
                f"{payload.get(self.name('code'), '')}/{payload.get(self.name('error'), '')}: "
                f"{payload.get(self.name('description'), '')}"
            )
        return str(payload)[:200]

    # --- used by the stand-in server --------------------------------------------------

    def error_ack(self, code: str, description: str) -> dict[str, Any]:
        f = self.name
        return {
            f("success"): False,
            f("error"): True,
            f("code"): code,
            f("description"): description,
        }

    def ok_ack(self) -> dict[str, Any]:
        return {self.name("success"): True}

    def tts_event(self, target_language: str, translation: str, mp3: bytes) -> dict[str, Any]:
        f = self.name
        return {f("target_language"): target_language, f("translation"): translation, f("mp3"): mp3}
