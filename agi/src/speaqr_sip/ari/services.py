"""What the calls of one ARI application share: the outbound policy and, per service, the
live call counters."""

import logging
from dataclasses import dataclass, field

from speaqr_sip.callrecords import LogSink, RecordSink, RecordWriter
from speaqr_sip.config import AriAppConfig
from speaqr_sip.policy import CallLimiter, DestinationPolicy

logger = logging.getLogger(__name__)


# Services whose calls hold a slot of their own limiter ([policy] / [policy.loopback]).
LIMITED_SERVICES = ("loopback", "call")


@dataclass
class CallServices:
    destinations: DestinationPolicy
    # One limiter per service of LIMITED_SERVICES: a loopback call never takes a call slot.
    limiters: dict[str, CallLimiter] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: AriAppConfig) -> "CallServices":
        return cls(
            destinations=DestinationPolicy.from_config(config.policy),
            limiters={
                service: CallLimiter.from_config(config.policy, service)
                for service in LIMITED_SERVICES
            },
        )

    @property
    def limiter(self) -> CallLimiter:
        """The ``call`` service's limiter."""
        return self.limiters["call"]


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
