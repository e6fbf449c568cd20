"""Plain AGI entry point: ``AGI(/opt/speaqr-sip/venv/bin/speaqr-agi-check,<service>)``.

Asterisk starts this once per call. It reads the AGI environment from stdin, checks the
headers against the authenticated endpoint and the ``users`` row, sets the ``SPEAQR_*``
channel variables (see :mod:`speaqr_sip.validation` and :mod:`speaqr_sip.causes`) and
logs one line. Configuration: ``--config PATH`` or ``$SPEAQR_SIP_AGI_CONFIG``, default
``/etc/speaqr-sip/agi.toml``.

Exit status is 0 whenever variables were set (accepted or refused): the dialplan, not
the exit status, decides what happens next.
"""

import argparse
import logging
import sys

from speaqr_sip.agi_io import StreamAGI
from speaqr_sip.agi_session import AGI_FAILURES, RefusalRecorder, run_check
from speaqr_sip.config import (
    AGI_CONFIG_ENV,
    DEFAULT_AGI_CONFIG,
    AgiConfig,
    ConfigError,
    LoggingConfig,
    load_agi_config,
    resolve_path,
)
from speaqr_sip.logsetup import configure_logging
from speaqr_sip.policy import DestinationPolicy
from speaqr_sip.userdb import UserDirectory

logger = logging.getLogger(__name__)


def refusal_recorder(config: AgiConfig | None) -> RefusalRecorder | None:
    """Call records for refusals when ``[call_records] enabled`` (imported only then)."""
    if config is None or not config.call_records.enabled:
        return None
    from speaqr_sip.callrecords import RefusalWriter

    return RefusalWriter.for_database(config.database)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="speaqr-agi-check", description=__doc__)
    parser.add_argument(
        "--config", help=f"TOML file (default ${AGI_CONFIG_ENV} or {DEFAULT_AGI_CONFIG})"
    )
    # Asterisk passes the dialplan arguments too; the check reads them from agi_arg_N.
    args, _unused = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config: AgiConfig | None = None
    config_problem = ""
    try:
        config = load_agi_config(resolve_path(args.config, AGI_CONFIG_ENV, DEFAULT_AGI_CONFIG))
    except ConfigError as exc:
        config_problem = str(exc)
    configure_logging(
        config.logging if config else LoggingConfig(target="syslog", syslog_ident="speaqr-agi")
    )
    if config_problem:
        logger.error("configuration: %s", config_problem)
    try:
        agi = StreamAGI(sys.stdin, sys.stdout, handle_sighup=True)
    except AGI_FAILURES as exc:
        logger.error("no AGI session on stdin: %s", exc.__class__.__name__)
        return 1
    directory = UserDirectory(config.database) if config else None
    policy = DestinationPolicy.from_config(config.policy) if config else None
    decision = run_check(agi, directory, policy, refusal_recorder(config))
    return 0 if decision is not None else 1


if __name__ == "__main__":
    sys.exit(main())
