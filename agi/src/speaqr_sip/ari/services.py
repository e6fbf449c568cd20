"""What the calls of one ARI application share: the outbound policy and its live counters."""

import logging
from dataclasses import dataclass

from speaqr_sip.callrecords import LogSink, RecordSink, RecordWriter
from speaqr_sip.config import AriAppConfig
from speaqr_sip.policy import CallLimiter, DestinationPolicy

logger = logging.getLogger(__name__)


@dataclass
class CallServices:
    destinations: DestinationPolicy
    limiter: CallLimiter

    @classmethod
    def from_config(cls, config: AriAppConfig) -> "CallServices":
        return cls(
            destinations=DestinationPolicy.from_config(config.policy),
            limiter=CallLimiter.from_config(config.policy),
        )


def record_sink(config: AriAppConfig) -> RecordSink:
    """The MariaDB writer when ``[call_records] enabled``, else one log line per record."""
    if config.call_records.enabled:
        db = config.database
        logger.info(
            "call records: MariaDB %s/%s as %s",
            db.unix_socket or f"{db.host}:{db.port}",
            db.name,
            db.user,
        )
        return RecordWriter.for_database(config.database, config.call_records)
    logger.warning("call records disabled ([call_records] enabled = false): logged only")
    return LogSink()
