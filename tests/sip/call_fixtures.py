"""Fixtures of the call-service tests (imported by tests/sip/conftest.py); see call_harness.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.audio import silence, tone_bursts, write_wav
from tests.sip.call_harness import (
    CallSettings,
    CarrierProcess,
    Target,
    carrier_netns,
    issue_carrier_certificate,
    load_call_settings,
)
from tests.sip.harness import TONE_HZ, SipClient


@pytest.fixture(scope="module")
def call_settings(host) -> CallSettings:
    return load_call_settings(host)


@pytest.fixture(scope="module")
def target(host) -> Target:
    return Target(host)


@pytest.fixture(scope="session")
def carrier_certificate_dir(tmp_path_factory) -> Path:
    """Where the carrier's certificate is kept for the whole run (issued once, not per module)."""
    return tmp_path_factory.mktemp("carrier-tls")


def carrier_tls_files(call_settings: CallSettings, target: Target, workdir: Path) -> tuple[Path, Path] | None:
    """The carrier's TLS certificate and key when the dialled trunk is TLS, else None; issued
    into ``workdir`` unless an earlier module already did."""
    if not call_settings.trunk_is_tls:
        return None
    if not (call_settings.carrier_tls_port and call_settings.lab_ca_dir):
        pytest.skip("the dialled trunk is TLS but the inventory has no speaqr_lab_carrier_tls_port / lab CA")
    cert, key = workdir / "carrier.crt", workdir / "carrier.key"
    if cert.exists() and key.exists():
        return cert, key
    return issue_carrier_certificate(target, call_settings.lab_ca_dir, call_settings.carrier_host, workdir)


@pytest.fixture(scope="module")
def carrier(call_settings, target, tmp_path_factory, carrier_certificate_dir):
    """The stand-in carrier for this module's tests, in the target's namespace; once it runs,
    a qualified trunk is waited for until Asterisk's OPTIONS find it steadily online (the
    trunk may still show the previous module's carrier, or flip offline from an OPTIONS sent
    while no carrier ran)."""
    workdir = tmp_path_factory.mktemp("carrier")
    proc = CarrierProcess(
        call_settings,
        workdir,
        netns=carrier_netns(),
        tls_files=carrier_tls_files(call_settings, target, carrier_certificate_dir),
    )
    proc.start()
    if call_settings.trunk_qualified:
        target.settle_trunk(call_settings.trunk["name"])
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def caller_tone(tmp_path_factory) -> Path:
    """The caller's signal: 1 kHz tone bursts (the carrier plays 600 Hz)."""
    d = tmp_path_factory.mktemp("call-audio")
    return write_wav(d / "caller-1k.wav", np.concatenate([tone_bursts(TONE_HZ), silence(0.2)]))


@dataclass
class Caller:
    """Places ``call`` service calls with the real TLS+SRTP client (one process per call)."""

    sip: SipClient

    def dial(
        self,
        user: str,
        destination: str,
        *extra: str,
        dial: str | None = None,
        origin: str | None = None,
        timeout: float = 120,
    ) -> dict:
        headers = {"X-Origin": origin or user, "X-Destination": destination}
        if dial is not None:
            headers["X-Dial"] = dial
        t0 = time.monotonic()
        r = self.sip.call(user, "call", "--setup-timeout", "60", *extra, headers=headers, timeout=timeout)
        r["wall_s"] = round(time.monotonic() - t0, 3)
        return r

    def hold(self, user: str, destination: str, workdir: Path, *extra: str):
        headers = {"X-Origin": user, "X-Destination": destination}
        return self.sip.hold(user, "call", "--setup-timeout", "30", *extra, workdir=workdir, headers=headers)


@pytest.fixture(scope="module")
def caller(sip) -> Caller:
    return Caller(sip)


@pytest.fixture(scope="module")
def passthrough_user(call_settings, sip_target) -> str:
    for user in sip_target.users:
        if call_settings.processor_of(user) == "passthrough":
            return user
    pytest.skip("no enabled user on the passthrough processor in this inventory")


@pytest.fixture(scope="module")
def speaqr_user(call_settings, sip_target) -> str:
    for user in sip_target.users:
        if call_settings.processor_of(user) == "speaqr":
            if not call_settings.fake_speaqr_enabled:
                pytest.skip(f"{user} uses the speaqr processor, but not the lab's stand-in Speaqr")
            return user
    pytest.skip("no enabled user on the speaqr processor in this inventory")


def post_dial_delay_ms(result: dict, carrier_call: dict) -> float | None:
    """INVITE with credentials sent by the caller -> INVITE arrived at the carrier (same host clock)."""
    sent = result.get("invites_sent_at_ms") or []
    if not sent or carrier_call.get("arrived_ms") is None:
        return None
    return round(carrier_call["arrived_ms"] - sent[-1], 3)
