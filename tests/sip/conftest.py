"""Fixtures for the real-client SIP tests: run ``python -m tests.sipclient`` against the target.

Where the target is and who may log in, in order of precedence:

| what | environment (overrides) | otherwise, from the inventory (testinfra ``host``) |
|---|---|---|
| network namespace the clients run in | ``SPEAQR_TARGET_NETNS`` (empty: run on this host) | - |
| SIP address contacted | ``SPEAQR_SIP_ADDRESS`` | ``speaqr_sip_address``, else ``ansible_host`` |
| SIP domain (certificate name) | ``SPEAQR_SIP_DOMAIN`` | ``speaqr_sip_domain``, else ``speaqr_asterisk_sip_domain`` |
| CA file the server certificate is verified with | ``SPEAQR_LAB_CA`` | ``.lab/<inventory_hostname>/lab-ca.crt``; the |
| | | system trust store when ``speaqr_tls_mode`` is ``provided`` |
| users | ``SPEAQR_SIP_USERS`` (JSON ``{"name": "pw"}``) | ``speaqr_users`` (templated; present and enabled) |

The client connects to the *domain* name and verifies the certificate against
it, like a real softphone; ``--resolve DOMAIN=ADDRESS`` makes the name point at
the target for the client process only (set ``SPEAQR_SIP_RESOLVE=0`` when the
domain really resolves, e.g. a staging host in DNS).

Running: ``molecule verify`` (the scenario's env sets the namespace and address), or against
the hosts of any inventory, e.g. staging, from the repository root as root:

    ANSIBLE_VAULT_PASSWORD_FILE=... .venv/bin/pytest --connection=ansible \
        --ansible-inventory=inventory/staging --hosts=speaqr_sip tests/sip

``test_sip_user_removal`` changes users and is skipped there unless
``SPEAQR_ALLOW_USER_CHANGES=1`` and ``SPEAQR_INVENTORY`` are set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.audio import silence, speech, tone_bursts, write_wav  # noqa: E402

# The call service's fixtures (stand-in carrier, settings, target probes): tests/sip/call_fixtures.py.
from tests.sip.call_fixtures import (  # noqa: E402, F401
    call_settings,
    caller,
    caller_tone,
    carrier,
    carrier_certificate_dir,
    passthrough_user,
    speaqr_user,
    target,
)
from tests.sip.harness import TONE_HZ, SipClient, SipTarget, load_target  # noqa: E402
from tests.sip.loopback import LoopbackSetup, load_setup  # noqa: E402


@pytest.fixture(scope="module")
def sip_target(host) -> SipTarget:
    """Depends on testinfra's ``host`` so the SIP tests run once per inventory host."""
    return load_target(host)


@pytest.fixture(scope="module")
def sip(sip_target) -> SipClient:
    return SipClient(sip_target)


@pytest.fixture(scope="module")
def sip_user(sip_target) -> str:
    return sip_target.first_user


@pytest.fixture(scope="module")
def setup(host) -> LoopbackSetup:
    """Who exercises what on this target (users per processor, config paths), from its inventory."""
    return load_setup(host)


@pytest.fixture(scope="module")
def alice(setup) -> str:
    """A user whose calls go through the passthrough processor."""
    if setup.passthrough_user is None:
        pytest.skip("no enabled user on the passthrough processor in this inventory")
    return setup.passthrough_user


@pytest.fixture(scope="module")
def served_after(sip, sip_target):
    """Call it after a refused or abusive input: a normal loopback call of the first user must
    still be served right after (bad input loses nothing)."""

    def check() -> dict:
        r = sip.call(sip_target.first_user, "loopback", "--duration", "0.5")
        assert r.get("status") == 200 and r.get("connected"), f"no normal call served right after: {r}"
        return r

    return check


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory) -> dict[str, Path]:
    """The test signals as 8 kHz mono 16-bit WAV files: 1 kHz tone bursts and a spoken phrase."""
    d = tmp_path_factory.mktemp("sip-audio")
    import numpy as np

    files = {"tone": write_wav(d / "tone-1k.wav", np.concatenate([tone_bursts(TONE_HZ), silence(0.2)]))}
    try:
        files["speech"] = speech("Speaqr loopback test. One, two, three, four, five.", d / "speech.wav")
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        files["speech_error"] = str(exc)
    return files


@pytest.fixture(scope="session")
def sip_metrics():
    """Figures the SIP tests observed (setup times, audio round trips), written to .lab/sip-metrics.json."""
    figures: list[dict] = []
    yield figures
    if figures:
        out = ROOT / ".lab" / "sip-metrics.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(figures, indent=1) + "\n")
