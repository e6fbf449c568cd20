"""The TLS policy on the wire (speaqr_asterisk_tls_method / _ciphers): what a client can and
cannot negotiate with the SIP/TLS port, probed with the controller's ``openssl s_client`` inside
the target's namespace. The default (sslv23 + Mozilla intermediate suites) gives TLS 1.3, TLS
1.2 with ECDHE + AES-GCM/CHACHA20-POLY1305, and nothing else."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.sip.harness import SipTarget, _templated

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl on the controller")


def s_client(t: SipTarget, *args: str) -> tuple[bool, str]:
    """(handshake completed, output) of one connection that sends nothing and closes."""
    cmd = ["ip", "netns", "exec", t.netns] if t.netns else []
    cmd += ["openssl", "s_client", "-connect", f"{t.address}:{t.port}", "-servername", t.domain]
    cmd += ["-CAfile", t.ca, "-verify_return_error", "-brief", *args]
    p = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=30, check=False)
    out = p.stdout + p.stderr
    return p.returncode == 0 and "CONNECTION ESTABLISHED" in out, out


@pytest.fixture(scope="module")
def method(host) -> str:
    return _templated(host, "speaqr_asterisk_tls_method") or "sslv23"


def test_a_client_offering_everything_gets_tls_1_3(sip_target, method):
    if method == "tlsv1_2":
        pytest.skip("speaqr_asterisk_tls_method tlsv1_2 is TLS 1.2 only")
    ok, out = s_client(sip_target)
    assert ok, out
    assert "Protocol version: TLSv1.3" in out, out


@pytest.mark.parametrize("suite", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"])
def test_a_tls_1_2_client_with_ecdhe_rsa_aes_gcm_gets_in(sip_target, method, suite):
    # What the lab's pjsua2 client (TLS 1.2 only) and OpenSSL 1.0.2 softphones offer.
    if method == "tlsv1_3":
        pytest.skip("speaqr_asterisk_tls_method tlsv1_3 is TLS 1.3 only")
    ok, out = s_client(sip_target, "-tls1_2", "-cipher", suite)
    assert ok, out
    assert "Protocol version: TLSv1.2" in out and f"Ciphersuite: {suite}" in out, out


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-RSA-AES128-SHA",  # CBC, not AEAD
        "ECDHE-RSA-AES256-SHA384",  # CBC, not AEAD
        "AES128-GCM-SHA256",  # AEAD but static RSA: no forward secrecy
        "AES256-SHA",  # neither
    ],
)
def test_tls_1_2_suites_that_are_not_forward_secret_aead_are_refused(sip_target, suite, served_after):
    ok, out = s_client(sip_target, "-tls1_2", "-cipher", suite)
    assert not ok, f"{suite} was accepted:\n{out}"
    served_after()


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_older_than_1_2_is_refused(sip_target, version, served_after):
    # SECLEVEL=0 so that the refusal is the server's, not this client's own OpenSSL policy.
    ok, out = s_client(sip_target, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert not ok, f"{version} was accepted:\n{out}"
    # The client did offer it (its own configuration did not stop it before the ClientHello).
    assert "no protocols available" not in out, out
    served_after()
