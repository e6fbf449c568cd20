"""One AGI check, shared by plain AGI and FastAGI: read, decide, set variables, log once."""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from asterisk.agi import AGIException

from speaqr_sip.agi_io import StreamAGI, escape_value
from speaqr_sip.causes import Refusal
from speaqr_sip.logsetup import safe
from speaqr_sip.policy import DestinationPolicy
from speaqr_sip.userdb import DatabaseUnavailable
from speaqr_sip.validation import (
    HEADER_NAMES,
    IDENTIFIER_RE,
    Accepted,
    Decision,
    Refused,
    UserRow,
    check_headers,
    check_user,
)

logger = logging.getLogger("speaqr_sip.agi")


class RefusalRecorder(Protocol):
    """Writes the call record of a refused call (:class:`speaqr_sip.callrecords.RefusalWriter`)."""

    def record_refusal(
        self,
        decision: Refused,
        *,
        channel_id: str,
        call_id: str,
        endpoint: str,
        service: str,
        headers: dict[str, str],
        started_at: datetime,
    ) -> None: ...


class UserLookup(Protocol):
    """What the check needs from the user store (:class:`speaqr_sip.userdb.UserDirectory`)."""

    def lookup(self, username: str) -> UserRow | None: ...


# What ends an AGI session early: the caller hung up, Asterisk closed the socket, a
# timeout, or a reply pyst2 cannot parse.
AGI_FAILURES = (AGIException, OSError, ValueError, EOFError)


def read_header(agi: StreamAGI, name: str) -> str:
    value: str = agi.get_variable(f"PJSIP_HEADER(read,{name})")
    return value


def header_unreadable(agi: StreamAGI, name: str) -> bool:
    """Whether header ``name`` is present although GET VARIABLE gave nothing.

    Asterisk reads a function for GET VARIABLE into a 1024-byte buffer: a longer header
    (e.g. 2 KB of garbage) fails to read and looks absent. Its length, computed by
    Asterisk inside GET FULL VARIABLE (a larger buffer), tells the two apart. ``name`` is
    one of :data:`HEADER_NAMES`, never caller input.
    """
    length: str = agi.get_full_variable(f"${{LEN(${{PJSIP_HEADER(read,{name})}})}}")
    return length.strip().isdigit() and int(length) > 0


# One GET FULL VARIABLE for all three: the lengths of each header's second instance,
# comma-separated ("0,0,0" when none is repeated). PJSIP_HEADER(read,<name>,2) is the second
# header of that name (names compared case-insensitively), empty when there is none; LEN()
# inside GET FULL VARIABLE also sees a second instance too long for GET VARIABLE.
SECOND_INSTANCE_LENGTHS = ",".join(
    f"${{LEN(${{PJSIP_HEADER(read,{name},2)}})}}" for name in HEADER_NAMES
)


class UnreadableReply(Exception):
    """Asterisk's answer to a check's own expression was not what that expression yields."""


def repeated_headers(agi: StreamAGI) -> list[str]:
    """The headers of :data:`HEADER_NAMES` the request carries more than once.

    A second instance with an empty value ("X-Origin:") has length 0 and is not counted: it
    names nobody. A reply that is not three lengths raises :class:`UnreadableReply`, so the
    check fails closed instead of taking an unknown answer for "no duplicates".
    """
    reply: str = agi.get_full_variable(SECOND_INSTANCE_LENGTHS)
    lengths = reply.strip().split(",")
    if len(lengths) != len(HEADER_NAMES) or not all(n.strip().isdigit() for n in lengths):
        raise UnreadableReply("second-instance lengths unreadable")
    return [name for name, n in zip(HEADER_NAMES, lengths, strict=True) if int(n) > 0]


def log_decision(
    decision: Decision, *, call_id: str, uniqueid: str, service: str, endpoint: str, ms: float
) -> None:
    """The one log line per call the product promises, with the SIP Call-ID."""
    common = (
        f"call_id={safe(call_id)} uniqueid={safe(uniqueid, 40)} service={safe(service, 16)} "
        f"endpoint={safe(endpoint, 64)}"
    )
    if isinstance(decision, Accepted):
        logger.info("%s result=OK elapsed_ms=%.1f", common, ms)
    else:
        d = decision.disposition
        logger.warning(
            "%s result=REFUSED reason=%s sip_status=%d cause=%d detail=%s elapsed_ms=%.1f",
            common,
            decision.reason.value,
            d.sip_status,
            d.q850_cause,
            safe(decision.detail, 120),
            ms,
        )


def endpoint_registered(agi: StreamAGI, endpoint: str) -> bool:
    """Whether one of the endpoint's AORs has a contact: clients must REGISTER before dialling.

    ``endpoint`` passed :func:`check_headers` (a plain identifier), so it is safe inside the
    function call; AOR names come from Asterisk's configuration and are checked the same way.
    """
    aors: str = agi.get_variable(f"PJSIP_ENDPOINT({endpoint},aors)")
    for aor in (name.strip() for name in aors.split(",")):
        if aor and IDENTIFIER_RE.fullmatch(aor):
            contacts: str = agi.get_variable(f"PJSIP_AOR({aor},contact)")
            if contacts.strip():
                return True
    return False


def decide_for_channel(
    agi: StreamAGI,
    lookup: Callable[[str], UserRow | None],
    service: str,
    endpoint: str,
    policy: DestinationPolicy | None = None,
    seen: dict[str, str] | None = None,
) -> Decision:
    """``seen`` (when given) receives the raw header values, for the refusal's call record."""
    headers = {name: read_header(agi, name) for name in HEADER_NAMES}
    if seen is not None:
        seen.update(headers)
    for name, value in headers.items():
        if value == "" and header_unreadable(agi, name):
            return Refused(
                Refusal.HEADER_TOO_LONG, f"{name} is longer than the 1023 characters AGI can read"
            )
    try:
        repeated = repeated_headers(agi)
    except UnreadableReply as exc:
        return Refused(Refusal.INTERNAL_ERROR, str(exc))
    checked = check_headers(service, headers, endpoint, policy, repeated)
    if isinstance(checked, Refused):
        return checked
    if not endpoint_registered(agi, endpoint):
        return Refused(Refusal.NOT_REGISTERED, "the endpoint's AORs have no registered contact")
    try:
        row = lookup(checked.origin)
    except DatabaseUnavailable as exc:
        return Refused(Refusal.DATABASE_UNAVAILABLE, str(exc))
    return check_user(checked, row)


def run_check(
    agi: StreamAGI,
    directory: UserLookup | None,
    policy: DestinationPolicy | None = None,
    recorder: "RefusalRecorder | None" = None,
) -> Decision | None:
    """Run the whole check on one channel; ``None`` if the caller hung up meanwhile.

    ``directory`` is ``None`` when the configuration could not be loaded: the call is
    then refused as internal error (503) instead of being left to the dialplan's mercy.
    ``policy`` is the ``[policy]`` destination rule for ``call`` (403 when violated).
    ``recorder`` (``[call_records] enabled``) writes a call record for every refusal:
    those calls never reach the ARI application, which records all the others.
    """
    started = time.monotonic()
    started_at = datetime.now(UTC)
    seen: dict[str, str] = {}
    service = agi.argument(1)
    uniqueid = agi.env.get("agi_uniqueid", "")
    call_id = endpoint = ""
    try:
        call_id = agi.get_variable("CHANNEL(pjsip,call-id)")
        endpoint = agi.get_variable("CHANNEL(endpoint)")
        decision: Decision
        if directory is None:
            decision = Refused(Refusal.INTERNAL_ERROR, "configuration not loaded")
        else:
            try:
                decision = decide_for_channel(
                    agi, directory.lookup, service, endpoint, policy, seen
                )
            except AGI_FAILURES:
                raise
            except Exception as exc:  # a bug must still end in a clean refusal
                logger.exception("check failed uniqueid=%s", safe(uniqueid, 40))
                decision = Refused(Refusal.INTERNAL_ERROR, exc.__class__.__name__)
        variables = {"SPEAQR_CALL_ID": call_id, **decision.channel_variables()}
        for name, value in variables.items():
            agi.set_variable(name, escape_value(value))
    except AGI_FAILURES as exc:
        logger.warning(
            "call_id=%s uniqueid=%s result=ABANDONED detail=%s",
            safe(call_id),
            safe(uniqueid, 40),
            safe(f"{exc.__class__.__name__}: {exc}", 120),
        )
        return None
    log_decision(
        decision,
        call_id=call_id,
        uniqueid=uniqueid,
        service=service,
        endpoint=endpoint,
        ms=(time.monotonic() - started) * 1000.0,
    )
    if recorder is not None and isinstance(decision, Refused):
        recorder.record_refusal(
            decision,
            channel_id=uniqueid,
            call_id=call_id,
            endpoint=endpoint,
            service=service,
            headers=seen,
            started_at=started_at,
        )
    return decision
