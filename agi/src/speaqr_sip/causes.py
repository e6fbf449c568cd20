"""Why a call is refused, and how each reason reaches the caller as a SIP status.

The AGI check sets two channel variables for every refusal; the dialplan uses them:

* ``SPEAQR_SIP_STATUS`` -- the exact SIP final response, for ``PJSIPHangup()``
  (chan_pjsip, Asterisk >= 20.5/21; accepts 400-699 and answers the pending INVITE with it).
  This is the primary path: it is the only way to send a 400.
* ``SPEAQR_HANGUP_CAUSE`` -- a Q.850 cause for ``Hangup()``. chan_pjsip turns it into a SIP
  status with ``hangup_cause2sip()`` (channels/chan_pjsip.c, Asterisk 22). Causes that function
  does not list become ``0`` and ``ast_sip_session_terminate()`` then sends 603 Decline, so
  only listed causes are used here.

Verified mapping in ``hangup_cause2sip()`` (Asterisk 22 source):

====================================  =====  ==========================
Q.850 cause                           code   SIP via Hangup()
====================================  =====  ==========================
AST_CAUSE_UNALLOCATED                 1      404 Not Found
AST_CAUSE_NO_ROUTE_TRANSIT_NET/DEST   2, 3   404 Not Found
AST_CAUSE_NO_USER_RESPONSE            18     408 Request Timeout
AST_CAUSE_NO_ANSWER / UNREGISTERED    19,20  480 Temporarily Unavailable
AST_CAUSE_CALL_REJECTED               21     403 Forbidden
AST_CAUSE_NUMBER_CHANGED              22     410 Gone
AST_CAUSE_INVALID_NUMBER_FORMAT       28     484 Address Incomplete
AST_CAUSE_FACILITY_REJECTED           29     501 Not Implemented
AST_CAUSE_NORMAL_UNSPECIFIED          31     480 Temporarily Unavailable
AST_CAUSE_CONGESTION                  34     503 Service Unavailable
AST_CAUSE_SWITCH_CONGESTION           42     503 Service Unavailable
AST_CAUSE_USER_BUSY                   17     486 Busy Here
AST_CAUSE_BEARERCAPABILITY_NOTAVAIL   58     488 Not Acceptable Here
AST_CAUSE_INTERWORKING                127    500 Server Internal Error
anything else (e.g. 38, 41, 111)      --     603 Decline (default)
====================================  =====  ==========================

No Q.850 cause yields 400 through ``Hangup()`` (111 "protocol error" is not listed and
would become 603), so the bad-request refusals use cause 21 (403) as the ``Hangup()``
fallback and 400 through ``PJSIPHangup()``.
"""

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Refusal(StrEnum):
    """Every reason the appliance refuses a call before the ARI application takes it."""

    MISSING_HEADER = "missing_header"
    HEADER_TOO_LONG = "header_too_long"
    BAD_CHARACTERS = "bad_characters"
    DUPLICATE_HEADER = "duplicate_header"
    NOT_AUTHENTICATED = "not_authenticated"
    NOT_REGISTERED = "not_registered"
    ORIGIN_MISMATCH = "origin_mismatch"
    UNKNOWN_USER = "unknown_user"
    USER_DISABLED = "user_disabled"
    MALFORMED_NUMBER = "malformed_number"
    DESTINATION_NOT_ALLOWED = "destination_not_allowed"
    UNKNOWN_SERVICE = "unknown_service"
    INVALID_USER_RECORD = "invalid_user_record"
    DATABASE_UNAVAILABLE = "database_unavailable"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Disposition:
    """How one refusal is signalled: SIP status for PJSIPHangup, Q.850 cause for Hangup."""

    sip_status: int
    q850_cause: int
    sip_via_hangup: int
    text: str


# Q.850 causes used by the appliance (values from Asterisk's include/asterisk/causes.h).
CAUSE_UNALLOCATED = 1
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17
CAUSE_NO_ANSWER = 19
CAUSE_CALL_REJECTED = 21
CAUSE_INVALID_NUMBER_FORMAT = 28
CAUSE_CONGESTION = 34
CAUSE_INTERWORKING = 127

# hangup_cause2sip() of Asterisk 22's chan_pjsip (table above): the SIP final response an
# unanswered incoming channel gets when it is hung up with this Q.850 cause.
_CAUSE_TO_SIP: MappingProxyType[int, int] = MappingProxyType(
    {
        1: 404,
        2: 404,
        3: 404,
        17: 486,
        18: 408,
        19: 480,
        20: 480,
        21: 403,
        22: 410,
        28: 484,
        29: 501,
        31: 480,
        34: 503,
        42: 503,
        58: 488,
        127: 500,
    }
)
SIP_DECLINE = 603


def sip_status_for_cause(cause: int) -> int:
    """The SIP status chan_pjsip sends before answer for Q.850 ``cause`` (603 if unlisted)."""
    return _CAUSE_TO_SIP.get(cause, SIP_DECLINE)


REFUSALS: MappingProxyType[Refusal, Disposition] = MappingProxyType(
    {
        Refusal.MISSING_HEADER: Disposition(
            400, CAUSE_CALL_REJECTED, 403, "required header missing"
        ),
        Refusal.HEADER_TOO_LONG: Disposition(400, CAUSE_CALL_REJECTED, 403, "header too long"),
        Refusal.BAD_CHARACTERS: Disposition(
            400, CAUSE_CALL_REJECTED, 403, "header has characters outside the allowed set"
        ),
        Refusal.DUPLICATE_HEADER: Disposition(
            400, CAUSE_CALL_REJECTED, 403, "header present more than once"
        ),
        Refusal.NOT_AUTHENTICATED: Disposition(
            403, CAUSE_CALL_REJECTED, 403, "no authenticated endpoint"
        ),
        Refusal.NOT_REGISTERED: Disposition(
            403, CAUSE_CALL_REJECTED, 403, "the account has no registered contact"
        ),
        Refusal.ORIGIN_MISMATCH: Disposition(
            403, CAUSE_CALL_REJECTED, 403, "X-Origin is not the authenticated user"
        ),
        Refusal.UNKNOWN_USER: Disposition(404, CAUSE_UNALLOCATED, 404, "user not in database"),
        Refusal.USER_DISABLED: Disposition(403, CAUSE_CALL_REJECTED, 403, "user disabled"),
        Refusal.MALFORMED_NUMBER: Disposition(
            484, CAUSE_INVALID_NUMBER_FORMAT, 484, "number is not E.164"
        ),
        Refusal.DESTINATION_NOT_ALLOWED: Disposition(
            403, CAUSE_CALL_REJECTED, 403, "destination not allowed"
        ),
        Refusal.UNKNOWN_SERVICE: Disposition(404, CAUSE_UNALLOCATED, 404, "unknown service"),
        Refusal.INVALID_USER_RECORD: Disposition(
            500, CAUSE_INTERWORKING, 500, "user record unusable"
        ),
        Refusal.DATABASE_UNAVAILABLE: Disposition(
            503, CAUSE_CONGESTION, 503, "database unavailable"
        ),
        Refusal.INTERNAL_ERROR: Disposition(503, CAUSE_CONGESTION, 503, "internal error"),
    }
)


def disposition(reason: Refusal) -> Disposition:
    """Return the SIP status / Q.850 cause pair for ``reason``."""
    return REFUSALS[reason]
