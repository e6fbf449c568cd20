"""Ending a call before the answer with a given outcome (status, cause, log line)."""

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.call_routing import CallerOutcome
from speaqr_sip.logsetup import safe


def refuse(ctx: CallContext, outcome: CallerOutcome, why: str) -> None:
    """The caller, still unanswered, will be hung up with ``outcome``'s cause by the teardown;
    one warning line with the SIP Call-ID says why."""
    ctx.hangup_cause = outcome.caller_cause
    ctx.record.set_outcome(outcome.cause, outcome.sip_status)
    ctx.log.warning(
        "call_id=%s %s: caller gets %d (%s)",
        safe(ctx.record.call_id),
        why,
        outcome.sip_status,
        outcome.cause,
    )
