"""Pure call-admission logic: headers + authenticated endpoint + user row -> decision.

No I/O here; :mod:`speaqr_sip.agi_session` feeds it from Asterisk and MariaDB.
Values that reach the dialplan or the ARI application only ever come out of an
:class:`Accepted`, whose fields all passed the checks below.
"""

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from speaqr_sip.causes import Disposition, Refusal, disposition
from speaqr_sip.policy import DestinationPolicy

MAX_IDENTIFIER_LENGTH = 64
MAX_EMAIL_LENGTH = 254

IDENTIFIER_RE = re.compile(r"[A-Za-z0-9._@+-]+")
E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,2}")
VOICE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

HEADER_ORIGIN = "X-Origin"
HEADER_DESTINATION = "X-Destination"
HEADER_DIAL = "X-Dial"
HEADER_NAMES = (HEADER_ORIGIN, HEADER_DESTINATION, HEADER_DIAL)


class Service(StrEnum):
    """The services a user can dial; the value is the Stasis argument."""

    LOOPBACK = "loopback"
    CALL = "call"


@dataclass(frozen=True, slots=True)
class UserRow:
    """The columns of one ``users`` row the check needs."""

    username: str
    email: str
    source_language: str
    target_language: str
    voice: str
    enabled: bool
    # Per-user processor override (``users.processor``): "" (the application's configured
    # processor), "passthrough" or "speaqr".
    processor: str = ""


# Values of ``users.processor`` the ARI application understands ("" = its configured default).
PROCESSORS = frozenset({"", "passthrough", "speaqr"})


@dataclass(frozen=True, slots=True)
class ValidHeaders:
    """Headers that passed syntax checks and belong to the authenticated endpoint."""

    service: Service
    origin: str
    destination: str
    dial: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """The call may proceed to ``Stasis(loopback, <service>)``."""

    service: Service
    origin: str
    destination: str
    dial: str
    email: str
    source_language: str
    target_language: str
    voice: str
    processor: str = ""

    def channel_variables(self) -> dict[str, str]:
        """Variables the AGI sets for the dialplan and the ARI application."""
        return {
            "SPEAQR_SERVICE": self.service.value,
            "SPEAQR_ORIGIN": self.origin,
            "SPEAQR_DESTINATION": self.destination,
            "SPEAQR_DIAL": self.dial,
            "SPEAQR_EMAIL": self.email,
            "SPEAQR_SOURCE_LANGUAGE": self.source_language,
            "SPEAQR_TARGET_LANGUAGE": self.target_language,
            "SPEAQR_VOICE": self.voice,
            "SPEAQR_PROCESSOR": self.processor,
            "SPEAQR_CHECK": "OK",
        }


@dataclass(frozen=True, slots=True)
class Refused:
    """The call is refused; ``detail`` is safe to log (no raw header values)."""

    reason: Refusal
    detail: str

    @property
    def disposition(self) -> Disposition:
        return disposition(self.reason)

    def channel_variables(self) -> dict[str, str]:
        d = self.disposition
        return {
            "SPEAQR_REFUSAL": self.reason.value,
            "SPEAQR_SIP_STATUS": str(d.sip_status),
            "SPEAQR_HANGUP_CAUSE": str(d.q850_cause),
            "SPEAQR_CHECK": "REFUSED",
        }


Decision = Accepted | Refused


def _check_identifier(name: str, value: str, *, required: bool) -> Refused | None:
    if value == "":
        return Refused(Refusal.MISSING_HEADER, f"{name} missing") if required else None
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return Refused(
            Refusal.HEADER_TOO_LONG,
            f"{name} is {len(value)} characters, limit {MAX_IDENTIFIER_LENGTH}",
        )
    if not IDENTIFIER_RE.fullmatch(value):
        return Refused(Refusal.BAD_CHARACTERS, f"{name} has characters outside [A-Za-z0-9._@+-]")
    return None


def _check_number(name: str, value: str) -> Refused | None:
    if not E164_RE.fullmatch(value):
        return Refused(Refusal.MALFORMED_NUMBER, f"{name} is not E.164 (+ and 8-15 digits)")
    return None


def dialled_number(destination: str, dial: str) -> str:
    """The number the carrier is asked for: X-Dial when present, else X-Destination."""
    return dial or destination


def check_headers(
    service: str,
    headers: Mapping[str, str],
    endpoint: str,
    policy: DestinationPolicy | None = None,
    repeated: Collection[str] = (),
) -> ValidHeaders | Refused:
    """Check the service argument, the three headers and the X-Origin/endpoint identity.

    ``headers`` maps header names to values (the first instance of each); an absent header
    is ``""`` or missing. ``repeated`` names the headers of :data:`HEADER_NAMES` that the
    request carries more than once: each of them is refused (400 ``duplicate_header``),
    because the first instance is not necessarily the one another SIP element acts on
    (two X-Origin make the identity ambiguous, two X-Destination/X-Dial the number).
    For ``call``, ``policy`` (when given) must allow the dialled number.
    """
    try:
        svc = Service(service)
    except ValueError:
        return Refused(Refusal.UNKNOWN_SERVICE, "service argument is not loopback or call")
    if endpoint == "" or not IDENTIFIER_RE.fullmatch(endpoint):
        return Refused(Refusal.NOT_AUTHENTICATED, "channel has no usable authenticated endpoint")
    for name in HEADER_NAMES:
        if name in repeated:
            return Refused(Refusal.DUPLICATE_HEADER, f"{name} appears more than once")
    origin = headers.get(HEADER_ORIGIN, "")
    destination = headers.get(HEADER_DESTINATION, "")
    dial = headers.get(HEADER_DIAL, "")
    for name, value, required in (
        (HEADER_ORIGIN, origin, True),
        (HEADER_DESTINATION, destination, True),
        (HEADER_DIAL, dial, False),
    ):
        refused = _check_identifier(name, value, required=required)
        if refused is not None:
            return refused
    if svc is Service.CALL:
        for name, value in ((HEADER_DESTINATION, destination), (HEADER_DIAL, dial)):
            if value:
                refused = _check_number(name, value)
                if refused is not None:
                    return refused
    if origin != endpoint:
        return Refused(Refusal.ORIGIN_MISMATCH, "X-Origin differs from the authenticated endpoint")
    if svc is Service.CALL and policy is not None:
        violation = policy.check(dialled_number(destination, dial))
        if violation is not None:
            which = HEADER_DIAL if dial else HEADER_DESTINATION
            return Refused(Refusal.DESTINATION_NOT_ALLOWED, f"{which}: {violation.detail}")
    return ValidHeaders(service=svc, origin=origin, destination=destination, dial=dial)


def _record_problem(row: UserRow) -> str | None:
    if not (0 < len(row.email) <= MAX_EMAIL_LENGTH and EMAIL_RE.fullmatch(row.email)):
        return "email missing or malformed"
    for column, value in (
        ("source_language", row.source_language),
        ("target_language", row.target_language),
    ):
        if not LANGUAGE_RE.fullmatch(value):
            return f"{column} missing or malformed"
    if not VOICE_RE.fullmatch(row.voice):
        return "voice missing or malformed"
    if row.processor not in PROCESSORS:
        return "processor is not passthrough, speaqr or NULL"
    return None


def check_user(headers: ValidHeaders, row: UserRow | None) -> Decision:
    """Admit the call for the user row looked up by X-Origin (``None`` when absent)."""
    # The database collation may be case-insensitive: insist on an exact match.
    if row is None or row.username != headers.origin:
        return Refused(Refusal.UNKNOWN_USER, "no users row for the authenticated endpoint")
    if not row.enabled:
        return Refused(Refusal.USER_DISABLED, "users row is disabled")
    problem = _record_problem(row)
    if problem is not None:
        return Refused(Refusal.INVALID_USER_RECORD, problem)
    return Accepted(
        service=headers.service,
        origin=headers.origin,
        destination=headers.destination,
        dial=headers.dial,
        email=row.email,
        source_language=row.source_language,
        target_language=row.target_language,
        voice=row.voice,
        processor=row.processor,
    )


def decide(
    service: str,
    headers: Mapping[str, str],
    endpoint: str,
    row: UserRow | None,
    policy: DestinationPolicy | None = None,
    repeated: Collection[str] = (),
) -> Decision:
    """The whole admission decision in one pure call (headers first, then the user row)."""
    checked = check_headers(service, headers, endpoint, policy, repeated)
    if isinstance(checked, Refused):
        return checked
    return check_user(checked, row)
