"""A new certificate reaches a running appliance without dropping anything: a loopback call
held across ``playbooks/certificates.yml`` keeps its audio and its TLS connection, Asterisk is
not restarted, and the next TLS handshake is served the new certificate, which clients verify.

The lab certificate is renewed the way an operator forces it: its file removed, the playbook run
(the role issues a new one from the lab CA and reloads the TLS listener). It runs under molecule
only (``MOLECULE_INVENTORY_FILE``); the playbook runs again whatever happens, so the target ends
with a certificate.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time

import pytest
from cryptography import x509

from tests.playbook import run_playbook, said
from tests.sip.call_harness import Target
from tests.sip.harness import SipTarget, _templated
from tests.sip.loopback import as_root

PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
HOLD_BEFORE_S = 2.0


def served_certificate(t: SipTarget) -> x509.Certificate:
    """The leaf certificate a new TLS connection to the SIP port is served (verified)."""
    cmd = ["ip", "netns", "exec", t.netns] if t.netns else []
    cmd += ["openssl", "s_client", "-connect", f"{t.address}:{t.port}", "-servername", t.domain]
    cmd += ["-CAfile", t.ca, "-verify_return_error"]
    p = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=30, check=False)
    found = PEM.search(p.stdout)
    assert p.returncode == 0 and found, f"no verified handshake with {t.address}:{t.port}:\n{p.stdout}{p.stderr}"
    return x509.load_pem_x509_certificate(found.group(0).encode())


def sip_tls_peers(target: Target) -> set[str]:
    """The peers of the appliance's established SIP/TLS connections."""
    shown = target.check_output("ss -Htn state established '( sport = :5061 )'")
    return {line.split()[-1] for line in shown.splitlines() if line.strip()}


def renew(host, inventory: str) -> float:
    certificate = _templated(host, "speaqr_tls_certificate_path")
    with as_root(host):
        host.check_output(f"rm -f {shlex.quote(certificate)}")
    started = time.monotonic()
    run = run_playbook(inventory, "certificates.yml")
    assert run.returncode == 0, f"certificates.yml failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    assert "Apply the new certificate to the running Asterisk" in said(run), run.stdout[-4000:]
    return time.monotonic() - started


@pytest.mark.skipif(
    not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="renews the target's certificate: only under molecule"
)
def test_a_renewed_certificate_is_served_while_a_call_keeps_its_audio_and_connection(
    host, sip, sip_target, alice, audio_files, tmp_path, sip_metrics
):
    target = Target(host)
    before = served_certificate(sip_target)
    asterisk_pid = target.main_pid("asterisk.service")
    held = sip.hold(alice, "loopback", "--play", str(audio_files["tone"]), workdir=tmp_path)
    renewed = False
    try:
        assert held.state["connected"] == [True], held.state
        time.sleep(HOLD_BEFORE_S)  # RTP flowing both ways before the change
        peers = sip_tls_peers(target)
        assert peers, "the held call has no TLS connection to the appliance"
        took = renew(host, os.environ["MOLECULE_INVENTORY_FILE"])
        renewed = True
        time.sleep(HOLD_BEFORE_S)  # media after the reload, measured at stop
        assert peers <= sip_tls_peers(target), "a client's TLS connection was closed by the renewal"
        result = held.stop()
        held = None
    finally:
        if held is not None:
            held.stop()
        if not renewed:
            run_playbook(os.environ["MOLECULE_INVENTORY_FILE"], "certificates.yml")

    at_stop = result["at_stop"]
    assert at_stop["connected"] and at_stop["rtp_flowing"], f"the call did not survive the renewal: {result}"
    assert at_stop["held_s"] >= took, result
    assert target.main_pid("asterisk.service") == asterisk_pid, "Asterisk was restarted to apply the certificate"
    after = served_certificate(sip_target)
    assert after.serial_number != before.serial_number, "the TLS listener still serves the old certificate"
    assert after.not_valid_after_utc >= before.not_valid_after_utc, (before.not_valid_after_utc, after)
    registered = sip.register(alice)
    assert registered["ok"], f"no REGISTER verified against the renewed certificate: {registered}"
    sip_metrics.append({"test": "call across a certificate renewal", "playbook_s": round(took, 1), "at_stop": at_stop})
