"""The real processes: ARI app on SIGTERM, ARI down at start-up, the stand-in Speaqr CLI."""

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from ari_fake import PASSWORD, USERNAME, FakeAri
from speaqr_sip.ari.app import AriApplication
from speaqr_sip.config import parse_ari_config
from test_ari_app import AGI_OK, media_of

# Explicit, so the tests run the same under any pytest configuration.
pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_ari_process_hangs_up_calls_and_exits_on_sigterm(tmp_path: Path) -> None:
    fake = FakeAri()
    url = await fake.start()
    config = tmp_path / "ari.toml"
    config.write_text(
        f'[ari]\nurl = "{url}"\nusername = "{USERNAME}"\npassword = "{PASSWORD}"\n'
        '[logging]\ntarget = "stderr"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "speaqr_sip.ari",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await fake.wait_for(lambda: fake.ws_connects == 1, limit_s=15)
        await fake.caller_enters_stasis("c-1", ["loopback"], AGI_OK)
        await fake.wait_for(lambda: len(media_of(fake, "c-1")) == 1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert not fake.channels and not fake.bridges
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert "hanging up 1 active call(s)" in log


async def test_ari_process_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "ari.toml"
    config.write_text("[ari]\nurl = 5\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "speaqr_sip.ari",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    assert await asyncio.wait_for(proc.wait(), 10) == 2
    assert proc.stderr is not None
    assert b"ari.url must be a string" in await proc.stderr.read()


async def test_app_keeps_retrying_while_asterisk_is_down_then_connects() -> None:
    port = free_port()
    config = parse_ari_config(
        {
            "ari": {
                "url": f"http://127.0.0.1:{port}",
                "username": USERNAME,
                "password": PASSWORD,
                "reconnect_initial": 0.05,
                "reconnect_max": 0.1,
            }
        }
    )
    async with aiohttp.ClientSession() as session:
        app = AriApplication(config, session)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        await asyncio.sleep(0.3)
        assert not app.events.connected.is_set()
        fake = FakeAri()
        await fake.start(port)  # Asterisk comes up on the configured port
        try:
            await asyncio.wait_for(app.events.connected.wait(), 5)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await fake.stop()


async def test_fake_speaqr_cli_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "speaqr_sip.testing.fake_speaqr",
        "--port",
        str(port),
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/socket.io/",
                        params={"EIO": "4", "transport": "polling"},
                    ) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("fake Speaqr did not start")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_stand_in_speaqr_takes_its_key_from_the_environment_not_the_command_line() -> None:
    from speaqr_sip.testing.fake_speaqr import API_KEY_ENV, parse_args

    args = parse_args(["--port", "9100"], {API_KEY_ENV: "k-from-env"})
    assert args.api_key == "k-from-env"
    assert parse_args(["--port", "9100"], {}).api_key == ""
    assert parse_args(["--port", "9100", "--api-key", "cli"], {API_KEY_ENV: "env"}).api_key == "cli"
