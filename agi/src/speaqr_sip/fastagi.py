"""FastAGI server: the same check as :mod:`speaqr_sip.agi_check`, served over TCP.

Dialplan: ``AGI(agi://127.0.0.1:4573/check,<service>)``. One thread per connection
drives a pyst2 AGI object over the socket's file objects; a kept database connection
is shared (guarded by a lock). ``python -m speaqr_sip.fastagi --config PATH``.
SIGTERM/SIGINT stop the server after the requests in progress.

Under systemd socket activation (``speaqr-fastagi.socket``) the server takes the listening
socket systemd holds, so the port stays bound while the service restarts and no other local
process can take it over and answer ``SPEAQR_CHECK=OK``.
"""

import argparse
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from speaqr_sip.agi_check import refusal_recorder
from speaqr_sip.agi_io import StreamAGI
from speaqr_sip.agi_session import AGI_FAILURES, UserLookup, run_check
from speaqr_sip.config import (
    AGI_CONFIG_ENV,
    DEFAULT_AGI_CONFIG,
    AgiConfig,
    ConfigError,
    load_agi_config,
    resolve_path,
)
from speaqr_sip.logsetup import configure_logging
from speaqr_sip.policy import DestinationPolicy
from speaqr_sip.userdb import UserDirectory

logger = logging.getLogger(__name__)

# sd_listen_fds(3): the first socket systemd passes is file descriptor 3.
SD_LISTEN_FDS_START = 3


def inherited_socket(environ: Mapping[str, str], pid: int) -> socket.socket | None:
    """The listening socket systemd passed to this process (socket activation), else ``None``."""
    if environ.get("LISTEN_PID") != str(pid):
        return None
    if environ.get("LISTEN_FDS") != "1":
        raise ConfigError(
            f"systemd passed {environ.get('LISTEN_FDS')!r} sockets; the FastAGI server takes one"
        )
    return socket.socket(fileno=SD_LISTEN_FDS_START)


class FastAgiServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True

    def __init__(
        self, config: AgiConfig, directory: UserLookup, listener: socket.socket | None = None
    ) -> None:
        self.config = config
        self.directory = directory
        self.policy = DestinationPolicy.from_config(config.policy)
        self.recorder = refusal_recorder(config)
        super().__init__(
            (config.fastagi.host, config.fastagi.port),
            FastAgiHandler,
            bind_and_activate=listener is None,
        )
        if listener is not None:
            self.socket.close()
            self.socket = listener
            self.server_address = listener.getsockname()


class FastAgiHandler(socketserver.BaseRequestHandler):
    server: FastAgiServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.config.fastagi.request_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with (
            sock.makefile("r", encoding="utf-8", errors="replace", newline="\n") as reader,
            sock.makefile("w", encoding="utf-8", newline="\n") as writer,
        ):
            try:
                agi = StreamAGI(reader, writer)
            except AGI_FAILURES as exc:
                logger.warning(
                    "FastAGI connection from %s ended before the environment: %s",
                    self.client_address[0],
                    exc.__class__.__name__,
                )
                return
            run_check(agi, self.server.directory, self.server.policy, self.server.recorder)


def serve(config: AgiConfig) -> None:
    listener = inherited_socket(os.environ, os.getpid())
    directory = UserDirectory(config.database, keep_connection=config.fastagi.reuse_db_connection)
    server = FastAgiServer(config, directory, listener)
    host, port = server.server_address[:2]
    how = "socket from systemd" if listener is not None else "own socket"
    logger.info("FastAGI listening on %s:%s (%s)", host, port, how)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping FastAGI server", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        directory.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speaqr-fastagi", description=__doc__)
    parser.add_argument(
        "--config", help=f"TOML file (default ${AGI_CONFIG_ENV} or {DEFAULT_AGI_CONFIG})"
    )
    args = parser.parse_args(argv)
    try:
        config = load_agi_config(resolve_path(args.config, AGI_CONFIG_ENV, DEFAULT_AGI_CONFIG))
    except ConfigError as exc:
        logging.basicConfig(level=logging.INFO)
        logger.error("configuration: %s", exc)
        return 2
    configure_logging(config.logging)
    try:
        serve(config)
    except ConfigError as exc:
        logger.error("configuration: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
