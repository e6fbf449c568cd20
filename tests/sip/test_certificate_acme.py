"""ACME mode against the lab's ACME server (Pebble on the public segment, scripts/target/common.sh):
``playbooks/certificates.yml`` with ``speaqr_tls_mode: acme`` obtains a certificate over HTTP-01
(Pebble connects to the appliance's public address on port 80), the TLS listener serves it with
its chain, and port 80 is closed again; certbot's own renewal (its systemd service, as its timer
starts it) replaces it while a call is held, without dropping the call or restarting Asterisk.

Afterwards the target goes back to the example inventory's lab certificate, whatever happened,
so the tests after this one find it as they expect. It runs under molecule only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.playbook import run_playbook, said
from tests.sip.call_harness import Target
from tests.sip.harness import SipClient, SipTarget, _templated
from tests.sip.loopback import as_root
from tests.sip.test_certificate_renewal import HOLD_BEFORE_S, served_certificate

ACME_SERVER = "198.51.100.50"
LINEAGE_SETTINGS = "/etc/letsencrypt/renewal/speaqr-sip.conf"
HOOK_RULE_COMMENT = "speaqr-acme-http01"
CERTBOT_SERVER_CA_SETTING = "/etc/systemd/system/certbot.service.d/speaqr-acme-server-ca.conf"

pytestmark = pytest.mark.skipif(
    not (os.environ.get("MOLECULE_INVENTORY_FILE") and os.environ.get("SPEAQR_ACME_NETNS")),
    reason="changes the target's certificate mode: only under molecule, with the lab's ACME server",
)


def acme_settings(**more) -> list[str]:
    settings = {
        "speaqr_tls_mode": "acme",
        "speaqr_tls_acme_directory": f"https://{ACME_SERVER}:14000/dir",
        "speaqr_tls_acme_email": "noc@speaqr.lab",
        "speaqr_tls_acme_server_ca_src": os.environ["SPEAQR_ACME_SERVER_CA"],
        **more,
    }
    return ["-e", json.dumps(settings)]


def certificates(*args: str) -> subprocess.CompletedProcess[str]:
    run = run_playbook(os.environ["MOLECULE_INVENTORY_FILE"], "certificates.yml", *args)
    assert run.returncode == 0, f"certificates.yml {args} failed:\n{run.stdout[-5000:]}\n{run.stderr[-2000:]}"
    return run


def acme_root(tmp_path: Path) -> str:
    """Pebble's root CA (made anew each time Pebble starts), as a file clients can trust."""
    cmd = ["ip", "netns", "exec", os.environ["SPEAQR_ACME_NETNS"], "curl", "-fsS"]
    cmd += ["--cacert", os.environ["SPEAQR_ACME_SERVER_CA"], f"https://{ACME_SERVER}:15000/roots/0"]
    pem = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    assert "BEGIN CERTIFICATE" in pem, pem
    path = tmp_path / "acme-root.pem"
    path.write_text(pem)
    return str(path)


def firewall_opens_port_80(target: Target) -> bool:
    return HOOK_RULE_COMMENT in target.check_output("nft list ruleset")


def back_to_lab_certificate(host, target: Target) -> None:
    """The example inventory's mode again; the ACME certificate's file removed so the lab CA
    issues a new one (as an operator forces a renewal)."""
    with as_root(host):
        host.check_output(f"rm -f {shlex.quote(_templated(host, 'speaqr_tls_certificate_path'))}")
    certificates()
    assert not host.file(LINEAGE_SETTINGS).exists, "certbot still has the lineage and would renew it"
    assert not host.file(CERTBOT_SERVER_CA_SETTING).exists, "certbot's service still trusts the lab's ACME CA"


def test_an_acme_certificate_is_obtained_served_and_renewed_by_certbot_while_a_call_keeps_its_audio(
    host, sip_target: SipTarget, alice, audio_files, tmp_path, sip_metrics
):
    target = Target(host)
    asterisk_pid = target.main_pid("asterisk.service")
    root = acme_root(tmp_path)
    acme_target = dataclasses.replace(sip_target, ca=root)
    held = None
    try:
        started = time.monotonic()
        issued = certificates(*acme_settings())
        issue_s = time.monotonic() - started
        assert "Obtain the certificate from the ACME CA" in said(issued)
        first = served_certificate(acme_target)  # verified against Pebble's root with the served chain
        names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sip_target.domain in names.get_values_for_type(x509.DNSName), names
        assert not firewall_opens_port_80(target), "port 80 was left open after the challenge"
        assert host.service("certbot.timer").is_running, "nothing renews the certificate"
        again = certificates(*acme_settings())
        assert "changed=0" in said(again), f"a rerun with a valid certificate changed:\n{again.stdout[-3000:]}"

        sip = SipClient(acme_target)
        held = sip.hold(alice, "loopback", "--play", str(audio_files["tone"]), workdir=tmp_path)
        assert held.state["connected"] == [True], held.state
        time.sleep(HOLD_BEFORE_S)
        # Due now: certbot's renewal, as its timer runs it, finds the certificate within the window.
        certificates(*acme_settings(speaqr_tls_acme_renew_before_days=3650))
        started = time.monotonic()
        target.check_output("systemctl start certbot.service")
        renew_s = time.monotonic() - started
        time.sleep(HOLD_BEFORE_S)
        result = held.stop()
        held = None
        at_stop = result["at_stop"]
        assert at_stop["connected"] and at_stop["rtp_flowing"], f"the call did not survive the renewal: {result}"
        renewed = served_certificate(acme_target)
        assert renewed.serial_number != first.serial_number, "certbot's renewal was not applied to the TLS listener"
        assert target.main_pid("asterisk.service") == asterisk_pid, "Asterisk was restarted to apply the certificate"
        assert not firewall_opens_port_80(target), "port 80 was left open after the renewal"
        assert sip.register(alice)["ok"], "no REGISTER verified against the renewed certificate"
        sip_metrics.append(
            {"test": "ACME issue and renewal", "issue_playbook_s": round(issue_s, 1), "renew_s": round(renew_s, 1)}
        )
    finally:
        if held is not None:
            held.stop()
        back_to_lab_certificate(host, target)
    lab = served_certificate(sip_target)  # verified against the lab CA again
    assert lab.serial_number != first.serial_number
