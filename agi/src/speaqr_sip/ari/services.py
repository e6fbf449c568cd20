"""What the calls of one ARI application share: the outbound policy and its live counters."""

from dataclasses import dataclass

from speaqr_sip.callrecords import LogSink, RecordSink, RecordWriter
from speaqr_sip.config import AriAppConfig
from speaqr_sip.policy import CallLimiter, DestinationPolicy


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
        return RecordWriter.for_database(config.database, config.call_records)
    return LogSink()
