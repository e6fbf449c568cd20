"""FastAGI server over TCP on localhost, and the plain AGI script as a subprocess."""

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from speaqr_sip.config import ConfigError, parse_agi_config
from speaqr_sip.fastagi import FastAgiServer, inherited_socket
from speaqr_sip.testing.fake_asterisk import FakeAsterisk, channel
from speaqr_sip.validation import UserRow

ALICE = UserRow("alice", "alice@example.com", "en-us", "es-es", "F", True)


class Directory:
    def lookup(self, username: str) -> UserRow | None:
        return ALICE if username == "alice" else None


@pytest.fixture
def fastagi() -> Iterator[tuple[str, int]]:
    config = parse_agi_config({"fastagi": {"port": 0, "request_timeout": 5.0}})
    server = FastAgiServer(config, Directory())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def call_fastagi(address: tuple[str, int], fake: FakeAsterisk) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        reader = sock.makefile("r", newline="\n")
        writer = sock.makefile("w", newline="\n")
        fake.converse(reader, writer)


def test_fastagi_accepts(fastagi: tuple[str, int]) -> None:
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    env["agi_network_script"] = "check"
    fake = FakeAsterisk(env, variables)
    call_fastagi(fastagi, fake)
    assert fake.set_vars["SPEAQR_CHECK"] == "OK"
    assert fake.set_vars["SPEAQR_SERVICE"] == "loopback"


def test_fastagi_refuses_mismatch(fastagi: tuple[str, int]) -> None:
    env, variables = channel(headers={"X-Origin": "bob", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    call_fastagi(fastagi, fake)
    assert fake.set_vars["SPEAQR_CHECK"] == "REFUSED"
    assert fake.set_vars["SPEAQR_REFUSAL"] == "origin_mismatch"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "403"


def test_fastagi_survives_a_client_that_disconnects_early(fastagi: tuple[str, int]) -> None:
    with socket.create_connection(fastagi, timeout=5) as sock:
        sock.sendall(b"agi_request: x\n")
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    call_fastagi(fastagi, fake)
    assert fake.set_vars["SPEAQR_CHECK"] == "OK"


def test_plain_agi_script_with_database_down(tmp_path: Path) -> None:
    """The real entry point, as Asterisk runs it: stdin/stdout, config from the environment."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "agi.toml"
    config.write_text(
        f'[database]\nhost = "127.0.0.1"\nport = {port}\n[logging]\ntarget = "stderr"\n'
    )
    env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
    fake = FakeAsterisk(env, variables)
    proc = subprocess.Popen(
        [sys.executable, "-m", "speaqr_sip.agi_check", "loopback"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SPEAQR_SIP_AGI_CONFIG": str(config)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    fake.converse(proc.stdout, proc.stdin)
    proc.stdin.close()
    proc.wait(timeout=10)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert fake.set_vars["SPEAQR_CHECK"] == "REFUSED"
    assert fake.set_vars["SPEAQR_REFUSAL"] == "database_unavailable"
    assert fake.set_vars["SPEAQR_SIP_STATUS"] == "503"
    lines = [line for line in stderr.splitlines() if "result=" in line]
    assert len(lines) == 1 and "reason=database_unavailable" in lines[0]


def test_a_socket_passed_by_systemd_is_served_instead_of_a_new_one() -> None:
    config = parse_agi_config({"fastagi": {"port": 1, "request_timeout": 5.0}})
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = FastAgiServer(config, Directory(), listener)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        assert server.server_address == listener.getsockname()  # not port 1 of the configuration
        env, variables = channel(headers={"X-Origin": "alice", "X-Destination": "test"})
        env["agi_network_script"] = "check"
        fake = FakeAsterisk(env, variables)
        call_fastagi(listener.getsockname()[:2], fake)
        assert fake.set_vars["SPEAQR_CHECK"] == "OK"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_systemd_sockets_are_taken_only_when_passed_to_this_process() -> None:
    assert inherited_socket({}, 1234) is None
    assert inherited_socket({"LISTEN_PID": "999", "LISTEN_FDS": "1"}, 1234) is None
    with pytest.raises(ConfigError, match="takes one"):
        inherited_socket({"LISTEN_PID": "1234", "LISTEN_FDS": "2"}, 1234)
