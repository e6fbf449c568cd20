"""Calls from a carrier never reach the users' services: an INVITE from the carrier's address
(identified as the carrier) lands in the carriers' context and is refused, whatever it asks for;
from anywhere else on the carrier's own transport it is only challenged (no anonymous calls)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.sip.call_harness import ROOT, appliance_address_for_carrier, carrier_netns, carrier_transport, number

SERVICES = ["loopback", "call", "echo", "+34911234567", "s"]


def _plain_trunk(call_settings) -> dict:
    """A carrier on a transport of its own, where a carrier's INVITE comes from its listening port
    (over TLS it would come from an ephemeral port, which no identify by port can match)."""
    plain = [c for c in call_settings.carriers if carrier_transport(c) != "tls"]
    if not plain:
        pytest.skip("no carrier on a plain transport in this inventory: nothing to send from")
    return plain[0]


def _invite(call_settings, sip_target, source_port: int, extension: str, user: str) -> dict:
    trunk = _plain_trunk(call_settings)
    netns = carrier_netns()
    cmd = ["ip", "netns", "exec", netns] if netns else []
    cmd += [sys.executable, "-m", "tests.carrier", "--listen", f"{call_settings.carrier_host}:{source_port}"]
    cmd += [
        "--transport",
        trunk["transport"],
        "--invite",
        f"sip:{extension}@{appliance_address_for_carrier(sip_target)}:{trunk['local_port']}",
    ]
    cmd += ["--header", f"X-Origin: {user}", "--header", f"X-Destination: {number('+34')}"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("extension", SERVICES)
def test_invite_from_the_carrier_is_refused(call_settings, sip_target, sip_user, extension, served_after):
    # Not the `carrier` fixture: this test sends from the carrier's own address and port.
    r = _invite(call_settings, sip_target, int(_plain_trunk(call_settings)["port"]), extension, sip_user)
    assert r["status"] == 403 and not r["connected"], r
    served_after()


def test_invite_from_another_port_is_only_challenged(call_settings, sip_target, sip_user, served_after):
    r = _invite(call_settings, sip_target, int(_plain_trunk(call_settings)["port"]) + 1, "loopback", sip_user)
    assert r["status"] == 401 and not r["connected"], r
    served_after()
