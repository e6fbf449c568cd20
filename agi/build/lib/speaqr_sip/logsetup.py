"""Process-wide logging set-up for the appliance's entry points (called once from main)."""

import logging
import logging.handlers
import os
import sys

from speaqr_sip.config import LoggingConfig

SYSLOG_SOCKET = "/dev/log"


def configure_logging(config: LoggingConfig) -> None:
    """Send the root logger to syslog (journald) or stderr, one line per record."""
    handler: logging.Handler
    if config.target == "syslog" and os.path.exists(SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.ident = f"{config.syslog_ident}[{os.getpid()}]: "
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)


def safe(value: str, limit: int = 80) -> str:
    """Render an untrusted value for a log line: escaped, one line, bounded length."""
    text = value.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    if len(text) > limit:
        text = f"{text[:limit]}...(+{len(text) - limit})"
    return f'"{text}"'
