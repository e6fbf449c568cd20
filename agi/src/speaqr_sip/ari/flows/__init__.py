"""Service flows by Stasis argument. Add a service: write a Flow and register it here."""

from speaqr_sip.ari.flows.base import Flow
from speaqr_sip.ari.flows.call import CallFlow, CallLegFlow
from speaqr_sip.ari.flows.loopback import LoopbackFlow

FLOWS: dict[str, type[Flow]] = {
    LoopbackFlow.service: LoopbackFlow,
    CallFlow.service: CallFlow,
    CallLegFlow.service: CallLegFlow,
}

__all__ = ["FLOWS", "CallFlow", "CallLegFlow", "Flow", "LoopbackFlow"]
