"""``python -m speaqr_sip.ari --config /etc/speaqr-sip/ari.toml`` (or $SPEAQR_SIP_ARI_CONFIG)."""

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp

from speaqr_sip.ari.app import AriApplication
from speaqr_sip.config import (
    ARI_CONFIG_ENV,
    DEFAULT_ARI_CONFIG,
    AriAppConfig,
    ConfigError,
    load_ari_config,
    resolve_path,
)
from speaqr_sip.logsetup import configure_logging

logger = logging.getLogger("speaqr_sip.ari")


async def run_app(config: AriAppConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=config.ari.connect_timeout, sock_connect=config.ari.connect_timeout
    )
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await AriApplication(config, session).run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speaqr-ari", description=__doc__)
    parser.add_argument(
        "--config", help=f"TOML file (default ${ARI_CONFIG_ENV} or {DEFAULT_ARI_CONFIG})"
    )
    args = parser.parse_args(argv)
    try:
        config = load_ari_config(resolve_path(args.config, ARI_CONFIG_ENV, DEFAULT_ARI_CONFIG))
    except ConfigError as exc:
        logging.basicConfig(level=logging.INFO)
        logger.error("configuration: %s", exc)
        return 2
    configure_logging(config.logging)
    asyncio.run(run_app(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
