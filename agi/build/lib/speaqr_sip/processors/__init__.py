"""Audio processors behind one interface (:class:`Processor`), and the selection rule.

``passthrough`` is chosen when ``[processor].kind`` is ``passthrough``, or ``auto`` with
no Speaqr API key configured; ``speaqr`` otherwise.
"""

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
    "create_processor",
    "selected_kind",
]


def selected_kind(config: AriAppConfig) -> Literal["passthrough", "speaqr"]:
    kind = config.processor.kind
    if kind == "auto":
        return "speaqr" if config.speaqr.api_key else "passthrough"
    return kind


def create_processor(
    config: AriAppConfig, kind: Literal["passthrough", "speaqr"] | None = None
) -> Processor:
    """A new, not yet started processor of ``kind`` (default: the configured one)."""
    chosen = kind or selected_kind(config)
    if chosen == "speaqr":
        # Imported here: socketio and the codecs are only loaded when Speaqr is used.
        from speaqr_sip.processors.speaqr import SpeaqrProcessor

        return SpeaqrProcessor(config.speaqr, max_backlog_ms=config.media.max_backlog_ms)
    return PassthroughProcessor(max_frames=config.media.max_backlog_ms // 20)
