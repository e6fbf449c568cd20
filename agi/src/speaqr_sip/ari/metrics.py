"""In-process counters of the ARI application, logged periodically and at shutdown."""

from dataclasses import asdict, dataclass


@dataclass
class AppMetrics:
    calls_started: int = 0
    calls_ended: int = 0
    calls_failed: int = 0
    calls_refused: int = 0
    speaqr_fallbacks: int = 0
    rtp_malformed: int = 0
    rtp_foreign: int = 0
    ari_reconnects: int = 0
    leftovers_ended: int = 0

    def as_text(self) -> str:
        return " ".join(f"{key}={value}" for key, value in asdict(self).items())
