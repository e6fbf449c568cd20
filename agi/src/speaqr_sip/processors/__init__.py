"""Audio processors behind one interface (:class:`Processor`), and the selection rule.

``passthrough`` is chosen when ``[processor].kind`` is ``passthrough``, or ``auto`` with
no Speaqr API key configured; ``speaqr`` otherwise. A user's own choice (``users.processor``,
handed over by the AGI check as ``SPEAQR_PROCESSOR``) overrides that for the user's calls:
see :func:`kind_for_call`.
"""

from dataclasses import dataclass
from typing import Literal

from speaqr_sip.config import AriAppConfig
from speaqr_sip.processors.base import FrameQueue, Processor, ProcessorError, SessionParams
from speaqr_sip.processors.passthrough import PassthroughProcessor

__all__ = [
    "FrameQueue",
    "PassthroughProcessor",
    "Processor",
    "ProcessorError",
    "SessionParams",
    "PASSTHROUGH_MAX_FRAMES",
    "CallProcessorChoice",
    "create_processor",
    "kind_for_call",
    "selected_kind",
]


def selected_kind(config: AriAppConfig) -> Literal["passthrough", "speaqr"]:
    kind = config.processor.kind
    if kind == "auto":
        return "speaqr" if config.speaqr.api_key else "passthrough"
    return kind


@dataclass(frozen=True, slots=True)
class CallProcessorChoice:
    """The processor of one call. ``kind`` is ``None`` when the call must be refused (503).

    ``note`` explains a choice that is not simply what was asked for (empty otherwise).
    """

    kind: Literal["passthrough", "speaqr"] | None
    note: str = ""


def kind_for_call(config: AriAppConfig, requested: str) -> CallProcessorChoice:
    """The processor for a call whose user asked for ``requested`` ("" = the configured one).

    ``speaqr`` needs an API key: without one the call follows ``[processor] fallback``
    (passthrough, or a refusal). Unknown values (the AGI check never sets them) count as "".
    """
    if requested == "passthrough":
        return CallProcessorChoice("passthrough")
    if requested == "speaqr":
        if config.speaqr.api_key:
            return CallProcessorChoice("speaqr")
        if config.processor.fallback == "passthrough":
            return CallProcessorChoice(
                "passthrough", "the user asks for speaqr but no Speaqr API key is configured"
            )
        return CallProcessorChoice(
            None, "the user asks for speaqr but no Speaqr API key is configured"
        )
    return CallProcessorChoice(selected_kind(config))


# Passthrough output waiting to be sent, at most (20 ms frames). Audio that waited longer is
# stale: after a stall (the host was busy, the socket buffer then delivers a burst) the oldest
# frames are dropped instead of being played late, so the caller's echo returns to its normal
# delay at once rather than keeping the stall as added latency for the rest of the call. With
# the relay's pacing tolerance (40 ms) at most one frame of backlog survives a burst.
PASSTHROUGH_MAX_FRAMES = 4


def create_processor(
    config: AriAppConfig, kind: Literal["passthrough", "speaqr"] | None = None
) -> Processor:
    """A new, not yet started processor of ``kind`` (default: the configured one)."""
    chosen = kind or selected_kind(config)
    if chosen == "speaqr":
        # Imported here: socketio and the codecs are only loaded when Speaqr is used.
        from speaqr_sip.processors.speaqr import SpeaqrProcessor

        return SpeaqrProcessor(config.speaqr, max_backlog_ms=config.media.max_backlog_ms)
    return PassthroughProcessor(max_frames=PASSTHROUGH_MAX_FRAMES)
