"""Pure rules of the ``call`` service: dial string, caller-ID, callee cause -> caller status.

The callee leg's Q.850 cause (``cause`` of its ChannelHangupRequest / ChannelDestroyed,
which chan_pjsip derives from the carrier's SIP response with ``hangup_sip2cause``) is
mapped to the cause the caller is hung up with before answer; chan_pjsip's
``hangup_cause2sip`` turns that into the caller's SIP final response:

==================================================  ==============  ====  ================
callee cause (carrier response)                     caller cause    SIP   call record
==================================================  ==============  ====  ================
1, 2, 3, 22 (404, 410, 420, 485, 604)               1               404   not_found
17 (486, 600)                                       17              486   busy
18, 19, 20 (408, 480, 483); 0, 16, 31 (no cause)    19              480   no_answer
our answer timer (``[call] answer_timeout``)        19              480   no_answer
21 (401, 403, 407, 603)                             21              403   rejected
28 (484)                                            28              484   invalid_number
anything else: 34, 38, 41, 42, 27, 58, 102, 127     34              503   unavailable
(5xx, 488/606, transport failure ...)
leg creation or dial refused by Asterisk (HTTP)    34              503   unavailable
==================================================  ==============  ====  ================
"""

from dataclasses import dataclass

from speaqr_sip.causes import (
    CAUSE_CALL_REJECTED,
    CAUSE_CONGESTION,
    CAUSE_INVALID_NUMBER_FORMAT,
    CAUSE_NO_ANSWER,
    CAUSE_UNALLOCATED,
    CAUSE_USER_BUSY,
)
from speaqr_sip.config import CallConfig


@dataclass(frozen=True, slots=True)
class CallerOutcome:
    """How a callee failure reaches the caller: Q.850 for the hangup, SIP status, record cause."""

    caller_cause: int
    sip_status: int
    cause: str


NOT_FOUND = CallerOutcome(CAUSE_UNALLOCATED, 404, "not_found")
BUSY = CallerOutcome(CAUSE_USER_BUSY, 486, "busy")
NO_ANSWER = CallerOutcome(CAUSE_NO_ANSWER, 480, "no_answer")
REJECTED = CallerOutcome(CAUSE_CALL_REJECTED, 403, "rejected")
INVALID_NUMBER = CallerOutcome(CAUSE_INVALID_NUMBER_FORMAT, 484, "invalid_number")
UNAVAILABLE = CallerOutcome(CAUSE_CONGESTION, 503, "unavailable")
POLICY = CallerOutcome(CAUSE_CALL_REJECTED, 403, "policy")

_BY_CAUSE: dict[int, CallerOutcome] = {
    **dict.fromkeys((1, 2, 3, 22), NOT_FOUND),
    17: BUSY,
    **dict.fromkeys((0, 16, 18, 19, 20, 31), NO_ANSWER),
    21: REJECTED,
    28: INVALID_NUMBER,
}


def outcome_for_callee_cause(cause: int) -> CallerOutcome:
    """The caller's outcome when the callee leg ended before answer with Q.850 ``cause``."""
    return _BY_CAUSE.get(cause, UNAVAILABLE)


def format_number(number: str, call: CallConfig) -> str:
    """``number`` (validated E.164) as the carrier wants it (``[call] number_format``)."""
    digits = number.removeprefix("+")
    if call.number_format == "e164":
        return number
    if call.number_format == "digits":
        return digits
    country = call.national_country_code
    if digits.startswith(country):
        return call.national_trunk_prefix + digits[len(country) :]
    return call.international_prefix + digits


def trunk_endpoint(number: str, call: CallConfig) -> str:
    """The dial string of the callee leg, e.g. ``PJSIP/+34911234567@carrier``."""
    return call.trunk_endpoint_template.format(number=format_number(number, call))


def trunk_resource(template: str) -> tuple[str, str] | None:
    """The endpoint a ``TECH/{number}@endpoint`` template dials, as (technology, resource);
    ``None`` when the template names no endpoint after ``@``."""
    technology = template.split("/", 1)[0]
    if "@" not in template:
        return None
    resource = template.rsplit("@", 1)[1]
    if not resource or any(c in resource for c in "{}/@;"):
        return None
    return technology, resource


def caller_id(call: CallConfig, username: str) -> str:
    """The caller-ID the carrier is shown: always ``"name" <number>``.

    The angle brackets make Asterisk take a non-numeric username as the number. The name is
    never left empty: Asterisk would then copy the customer's own caller name (its username) into
    the outbound leg, and a fixed caller-ID would reveal who called. Without ``callerid_name``
    the number stands in as the name.
    """
    number = call.callerid_number if call.callerid_policy == "fixed" else username
    return f'"{call.callerid_name or number}" <{number}>'
