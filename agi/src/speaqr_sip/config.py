"""Configuration files (TOML), loaded once at start-up and passed down.

Two files, one per process owner:

* ``/etc/speaqr-sip/agi.toml`` -- read by the AGI check (plain AGI runs as the Asterisk user;
  the FastAGI server as its own service). Path: ``--config`` or ``$SPEAQR_SIP_AGI_CONFIG``.
* ``/etc/speaqr-sip/ari.toml`` -- read by the ARI application. Path: ``--config`` or
  ``$SPEAQR_SIP_ARI_CONFIG``.

Every key has a default except secrets; unknown sections or keys are an error so a typo
in the rendered file is caught at start-up instead of being silently ignored.
``examples/agi.toml`` and ``examples/ari.toml`` show every key.
"""

import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_AGI_CONFIG = Path("/etc/speaqr-sip/agi.toml")
DEFAULT_ARI_CONFIG = Path("/etc/speaqr-sip/ari.toml")
AGI_CONFIG_ENV = "SPEAQR_SIP_AGI_CONFIG"
ARI_CONFIG_ENV = "SPEAQR_SIP_ARI_CONFIG"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or has a bad value."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    # When set, connect through this Unix socket instead of host/port.
    unix_socket: str = ""
    name: str = "speaqr"
    user: str = "speaqr_agi"
    password: str = ""
    connect_timeout: float = 2.0
    read_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class FastAgiConfig:
    host: str = "127.0.0.1"
    port: int = 4573
    # Per-connection socket timeout (seconds) for every read/write with Asterisk.
    request_timeout: float = 5.0
    # Keep one database connection open and reuse it across requests.
    reuse_db_connection: bool = True


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # syslog: /dev/log (journald), falls back to stderr when /dev/log is absent.
    target: Literal["syslog", "stderr"] = "stderr"
    syslog_ident: str = "speaqr-sip"


# Premium-rate and similar ranges that are never dialled unless the operator replaces
# this list (Spain 803/806/807/905, NANP 900/976, UK 90x/91x).
DEFAULT_BLOCKED_PREFIXES = (
    "+34803",
    "+34806",
    "+34807",
    "+34905",
    "+1900",
    "+1976",
    "+4490",
    "+4491",
)


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Abuse limits of one service, enforced by the ARI application (the only process that
    knows which calls are live). The defaults are the ``loopback`` service's."""

    # Live calls (from admission in the application to teardown) per user and in total;
    # a call over either limit is refused with 403. 0 refuses every call of the service.
    max_calls_per_user: int = 2
    max_calls_total: int = 50
    # Seconds from the answer; the call is then hung up (normal clearing, cause max_duration).
    max_call_duration: int = 3600


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Outbound ``call`` policy and the services' limits; the same section goes into agi.toml
    and ari.toml.

    The AGI check applies the prefix lists (403 before Stasis); the ARI application applies
    them again before dialling, plus each service's concurrency limits and duration cap
    (:meth:`limits`): the ``call`` service's are the top-level ``max_*`` keys, the
    ``loopback`` service's the ``[policy.loopback]`` table.
    """

    # Deny by default: a number is dialled only if it starts with one of these E.164 prefixes.
    allowed_prefixes: tuple[str, ...] = ()
    # Never dialled, even when an allowed prefix also matches (blocked wins over allowed).
    blocked_prefixes: tuple[str, ...] = DEFAULT_BLOCKED_PREFIXES
    # Live outbound calls (ringing or answered) per user and for the whole appliance.
    max_calls_per_user: int = 2
    max_calls_total: int = 10
    # Seconds from the callee's answer; both legs are hung up when it is reached.
    max_call_duration: int = 3600
    # The loopback service's limits (each loopback call holds a relay and a processor session).
    loopback: ServiceLimits = field(default_factory=ServiceLimits)

    def limits(self, service: str) -> ServiceLimits:
        """The limits of ``service`` (``call`` or ``loopback``); ``KeyError`` for any other."""
        if service == "call":
            return ServiceLimits(
                max_calls_per_user=self.max_calls_per_user,
                max_calls_total=self.max_calls_total,
                max_call_duration=self.max_call_duration,
            )
        if service == "loopback":
            return self.loopback
        raise KeyError(service)


@dataclass(frozen=True, slots=True)
class CallRecordsConfig:
    """One ``call_records`` row per call attempt (schema: the 0100_call_records migration)."""

    enabled: bool = False
    # ARI application only: rows waiting for the database (beyond this they are logged
    # in full and dropped), rows per INSERT, retry backoff, final flush on shutdown.
    queue_size: int = 3000  # three writes per call: open, answered, finished
    batch_size: int = 50
    retry_initial: float = 0.5
    retry_max: float = 30.0
    flush_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The ARI application's admin endpoint: Prometheus ``/metrics`` and ``/health/live`` /
    ``/health/ready``. ``listen`` ``HOST:PORT`` ("" = off); off loopback, HTTP basic auth
    (``username``/``password``) is required."""

    listen: str = ""
    username: str = ""
    password: str = ""

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class AgiConfig:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    fastagi: FastAgiConfig = field(default_factory=FastAgiConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # Refusals by the AGI check (they never reach the ARI application) as call records.
    call_records: CallRecordsConfig = field(default_factory=CallRecordsConfig)
    logging: LoggingConfig = field(
        default_factory=lambda: LoggingConfig(target="syslog", syslog_ident="speaqr-agi")
    )


@dataclass(frozen=True, slots=True)
class AriConnectionConfig:
    url: str = "http://127.0.0.1:8088"
    username: str = "speaqr"
    password: str = ""
    app: str = "loopback"
    request_timeout: float = 5.0
    connect_timeout: float = 5.0
    heartbeat: float = 20.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    # On SIGTERM: how long to wait for active calls to be torn down.
    shutdown_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class MediaConfig:
    bind_host: str = "127.0.0.1"
    # Inbound frames waiting for the processor (each 20 ms); extra frames are dropped.
    inbound_queue_frames: int = 50
    # Processor output waiting to be played; the oldest audio is dropped beyond this.
    max_backlog_ms: int = 10000


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    # auto: speaqr when [speaqr].api_key is set, passthrough otherwise.
    kind: Literal["auto", "passthrough", "speaqr"] = "auto"
    # What to do when Speaqr fails: keep the call with passthrough, or hang up (503).
    fallback: Literal["passthrough", "hangup"] = "passthrough"
    start_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class SpeaqrConfig:
    url: str = "https://public.speaqr.ai"
    socketio_path: str = "socket.io"
    api_key: str = ""
    auth_style: Literal["header", "token"] = "header"
    # Audio sent per upload message, in milliseconds.
    chunk_ms: int = 200
    # Sample rate of the WAV chunks sent to Speaqr (PCMU is 8000 Hz; others are resampled).
    upload_sample_rate: int = 8000
    # send_audio: one WAV file per chunk; stream: connect_stream/write_stream/disconnect_stream.
    upload_mode: Literal["send_audio", "stream"] = "send_audio"
    connect_timeout: float = 5.0
    # Session set-up (live_connect, connect_stream) must be acknowledged within ack_timeout;
    # each audio upload within stall_timeout, else Speaqr counts as stalled mid-call and the
    # call goes to [processor] fallback: this bounds the caller's silence when Speaqr hangs.
    ack_timeout: float = 5.0
    stall_timeout: float = 1.0
    # Overrides of wire names, see speaqr_sip.speaqr_wire (event -> name, field -> name).
    events: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallConfig:
    """How the ``call`` service reaches the carrier trunk."""

    # Dial string; {number} is the dialled number after number_format. The dialplan/PJSIP
    # side must provide the endpoint named here (see the README's trunk contract).
    trunk_endpoint_template: str = "PJSIP/{number}@carrier"
    # e164: +34911234567; digits: 34911234567; national: numbers of national_country_code
    # as national_trunk_prefix + national number (911234567), others international_prefix +
    # digits (0014155550100).
    number_format: Literal["e164", "digits", "national"] = "e164"
    national_country_code: str = ""
    national_trunk_prefix: str = ""
    international_prefix: str = "00"
    # Caller-ID presented to the carrier: fixed (callerid_number) or the user's username.
    callerid_policy: Literal["fixed", "username"] = "username"
    callerid_number: str = ""
    callerid_name: str = ""
    # Seconds the callee may ring before the caller gets 480.
    answer_timeout: float = 30.0
    # Send 180 to the caller when the callee rings (on_ringing) or as soon as we dial.
    ringback: Literal["on_ringing", "immediate"] = "on_ringing"
    # Asterisk qualifies the trunk (qualify_frequency > 0): ask its endpoint's state before
    # dialling and refuse with 503 at once when it is offline. false: assumed reachable.
    trunk_qualified: bool = False


@dataclass(frozen=True, slots=True)
class AriAppConfig:
    ari: AriConnectionConfig = field(default_factory=AriConnectionConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    speaqr: SpeaqrConfig = field(default_factory=SpeaqrConfig)
    call: CallConfig = field(default_factory=CallConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    database: DatabaseConfig = field(default_factory=lambda: DatabaseConfig(user="speaqr_ari"))
    call_records: CallRecordsConfig = field(default_factory=CallRecordsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(
        default_factory=lambda: LoggingConfig(target="stderr", syslog_ident="speaqr-ari")
    )


def _coerce(where: str, expected: Any, value: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            raise ConfigError(
                f"{where} must be one of {', '.join(map(str, choices))}, not {value!r}"
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{where} must be a table of strings")
        return dict(value)
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        if value < 0:
            raise ConfigError(f"{where} must not be negative")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return value
    if is_dataclass(expected) and isinstance(expected, type):
        if isinstance(value, expected):
            return value  # a sub-table's default, kept when the file does not set it
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{where}] must be a table")
        return _build(expected, value, where)
    raise ConfigError(f"{where}: unsupported type {expected!r}")  # pragma: no cover


def _build[T](cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        place = f"[{where}]" if where else "the top level"
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {place}")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        expected = hints[name]
        if is_dataclass(expected) and isinstance(value, Mapping):
            # Sub-tables start from the parent's default for that section.
            base = getattr(defaults, name)
            merged = {f.name: getattr(base, f.name) for f in fields(base)}
            merged.update(value)
            kwargs[name] = _coerce(key, expected, merged)
        else:
            kwargs[name] = _coerce(key, expected, value)
    return cls(**kwargs)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except PermissionError as exc:
        raise ConfigError(f"configuration file {path} is not readable") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc


def resolve_path(explicit: str | None, env_var: str, default: Path) -> Path:
    """``--config`` wins, then the environment variable, then the default path."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(env_var, "")
    return Path(from_env) if from_env else default


PREFIX_RE = re.compile(r"\+[0-9]{1,15}")
CALLERID_NUMBER_RE = re.compile(r"\+?[0-9]{1,20}")
CALLERID_NAME_RE = re.compile(r"[A-Za-z0-9 ._@+-]{0,40}")


def _check_policy(policy: PolicyConfig) -> None:
    for key in ("allowed_prefixes", "blocked_prefixes"):
        for prefix in getattr(policy, key):
            if not PREFIX_RE.fullmatch(prefix):
                raise ConfigError(f"policy.{key}: {prefix!r} is not '+' followed by digits")
    for where, limits in (("policy", policy.limits("call")), ("policy.loopback", policy.loopback)):
        if limits.max_calls_per_user < 0 or limits.max_calls_total < 0:
            raise ConfigError(
                f"{where}.max_calls_per_user and max_calls_total must not be negative"
            )
        if limits.max_call_duration <= 0:
            raise ConfigError(f"{where}.max_call_duration must be a positive number of seconds")


def _check_call_records(records: CallRecordsConfig) -> None:
    if records.queue_size < 1 or records.batch_size < 1:
        raise ConfigError("call_records.queue_size and batch_size must be at least 1")
    if records.retry_initial <= 0 or records.retry_max < records.retry_initial:
        raise ConfigError("call_records.retry_initial must be > 0 and <= retry_max")


def _check_call(call: CallConfig) -> None:
    template = call.trunk_endpoint_template
    if template.count("{number}") != 1 or "/" not in template.split("{number}")[0]:
        raise ConfigError(
            "call.trunk_endpoint_template must be TECH/...{number}... with {number} once"
        )
    try:
        template.format(number="0")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"call.trunk_endpoint_template: {exc}") from exc
    if call.number_format == "national" and not call.national_country_code.isdigit():
        raise ConfigError("call.number_format = national needs call.national_country_code")
    for key in ("national_country_code", "national_trunk_prefix", "international_prefix"):
        value = getattr(call, key)
        if value and not value.isdigit():
            raise ConfigError(f"call.{key} must be digits")
    if call.callerid_policy == "fixed" and not CALLERID_NUMBER_RE.fullmatch(call.callerid_number):
        raise ConfigError(
            "call.callerid_policy = fixed needs call.callerid_number (digits, + allowed)"
        )
    if call.callerid_number and not CALLERID_NUMBER_RE.fullmatch(call.callerid_number):
        raise ConfigError("call.callerid_number must be digits with an optional leading +")
    if not CALLERID_NAME_RE.fullmatch(call.callerid_name):
        raise ConfigError("call.callerid_name: at most 40 of [A-Za-z0-9 ._@+-]")
    if call.answer_timeout <= 0:
        raise ConfigError("call.answer_timeout must be positive")


def parse_agi_config(data: Mapping[str, Any]) -> AgiConfig:
    config = _build(AgiConfig, data)
    _check_policy(config.policy)
    return config


def parse_ari_config(data: Mapping[str, Any]) -> AriAppConfig:
    config = _build(AriAppConfig, data)
    if not 0 < config.speaqr.stall_timeout <= config.speaqr.ack_timeout:
        raise ConfigError("speaqr.stall_timeout must be positive and at most speaqr.ack_timeout")
    if config.speaqr.chunk_ms < 20 or config.speaqr.chunk_ms % 20:
        raise ConfigError("speaqr.chunk_ms must be a positive multiple of 20")
    if config.speaqr.upload_sample_rate not in (8000, 16000, 24000, 44100, 48000):
        raise ConfigError("speaqr.upload_sample_rate must be 8000, 16000, 24000, 44100 or 48000")
    if config.ari.reconnect_initial <= 0 or config.ari.reconnect_max < config.ari.reconnect_initial:
        raise ConfigError("ari.reconnect_initial must be > 0 and <= ari.reconnect_max")
    _check_policy(config.policy)
    _check_call(config.call)
    _check_call_records(config.call_records)
    _check_metrics(config.metrics)
    return config


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _check_metrics(metrics: MetricsConfig) -> None:
    if not metrics.listen:
        return
    host, sep, port = metrics.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f"metrics.listen must be HOST:PORT (0: any free port), not {metrics.listen!r}"
        )
    if bool(metrics.username) != bool(metrics.password):
        raise ConfigError("metrics.username and metrics.password go together")
    if host.strip("[]") not in LOOPBACK_HOSTS and not metrics.password:
        raise ConfigError(
            f"metrics.listen {metrics.listen} is not on loopback: set metrics.username and password"
        )


def load_agi_config(path: Path) -> AgiConfig:
    return parse_agi_config(_read(path))


def load_ari_config(path: Path) -> AriAppConfig:
    return parse_ari_config(_read(path))
