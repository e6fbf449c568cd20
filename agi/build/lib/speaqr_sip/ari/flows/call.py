"""The ``call`` service (issue 4): not implemented yet, refused with 503."""

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.causes import CAUSE_CONGESTION


class CallFlow(Flow):
    service = "call"

    async def run(self, ctx: CallContext) -> None:
        ctx.log.warning("service=call refused: not available yet (503)")
        ctx.metrics.calls_refused += 1
        ctx.hangup_cause = CAUSE_CONGESTION
