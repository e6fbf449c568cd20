"""Call-setup cost of the AGI check: plain AGI (a process per call) vs FastAGI (TCP server).

Python-only: a scripted Asterisk (speaqr_sip.testing.fake_asterisk) drives both variants
through the same conversation on this machine, so the figures compare the transports,
not Asterisk. Two scenarios per variant:

* ``refused-before-db`` -- X-Origin differs from the endpoint: decided without MariaDB;
  the cost of starting the check and the AGI round trips.
* ``db-refused`` -- valid headers, database port closed: adds one failed TCP connect.

The real figures (with Asterisk and MariaDB) come from the end-to-end tests on the target.

    .venv/bin/python benchmarks/agi_setup.py [--runs 50]

Writes benchmarks/out/agi_setup.json and logs a summary.
"""

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from speaqr_sip.config import parse_agi_config
from speaqr_sip.fastagi import FastAgiServer
from speaqr_sip.testing.fake_asterisk import FakeAsterisk, channel
from speaqr_sip.userdb import UserDirectory

logger = logging.getLogger("benchmarks.agi_setup")
OUT = Path(__file__).resolve().parent / "out" / "agi_setup.json"

SCENARIOS = {
    "refused-before-db": {"X-Origin": "mallory", "X-Destination": "test"},
    "db-refused": {"X-Origin": "alice", "X-Destination": "test"},
}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def plain_agi_once(config_path: Path, headers: dict[str, str]) -> float:
    env, variables = channel(headers=headers)
    fake = FakeAsterisk(env, variables)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "speaqr_sip.agi_check", "loopback"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "SPEAQR_SIP_AGI_CONFIG": str(config_path)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    fake.converse(proc.stdout, proc.stdin)
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    proc.wait(timeout=10)
    assert fake.set_vars.get("SPEAQR_CHECK") == "REFUSED", fake.set_vars
    return elapsed


def fastagi_once(address: tuple[str, int], headers: dict[str, str]) -> float:
    env, variables = channel(headers=headers)
    fake = FakeAsterisk(env, variables)
    started = time.perf_counter()
    with socket.create_connection(address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fake.converse(sock.makefile("r", newline="\n"), sock.makefile("w", newline="\n"))
    elapsed = time.perf_counter() - started
    assert fake.set_vars.get("SPEAQR_CHECK") == "REFUSED", fake.set_vars
    return elapsed


def summarise(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in samples)
    return {
        "runs": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
    }


def measure(runs: int, once: Callable[[], float]) -> dict[str, float]:
    once()  # warm-up (page cache, server thread)
    return summarise([once() for _ in range(runs)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    db_port = closed_port()
    data = {"database": {"host": "127.0.0.1", "port": db_port}, "fastagi": {"port": 0}}
    config = parse_agi_config(data)
    results: dict[str, dict[str, dict[str, float]]] = {"plain_agi": {}, "fastagi": {}}

    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "agi.toml"
        config_path.write_text(f'[database]\nhost = "127.0.0.1"\nport = {db_port}\n[logging]\ntarget = "stderr"\n')
        for name, headers in SCENARIOS.items():
            results["plain_agi"][name] = measure(args.runs, lambda h=headers: plain_agi_once(config_path, h))

    logging.getLogger("speaqr_sip").setLevel(logging.ERROR)
    server = FastAgiServer(config, UserDirectory(config.database, keep_connection=True))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        address = (str(server.server_address[0]), int(server.server_address[1]))
        for name, headers in SCENARIOS.items():
            results["fastagi"][name] = measure(args.runs, lambda h=headers: fastagi_once(address, h))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {"python": sys.version.split()[0], "results": results}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    for variant, scenarios in results.items():
        for name, figures in scenarios.items():
            logger.info("%-10s %-18s %s", variant, name, figures)
    logger.info("written %s", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
