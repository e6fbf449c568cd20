"""The appliance verifies a TLS carrier's certificate: a stand-in carrier on the trunk's address
with a certificate the appliance cannot trust (self-signed, or from the trusted lab CA but for
another address) never gets the call (503, and not even an INVITE reaches it); the same carrier
with a certificate for its address from the trusted CA does. Where the trunk registers, the
certificate is its edge's (the carrier's registrar and proxy, tests/sip/carrier_edge.py).

The audio of calls over the TLS+SRTP trunk is judged in test_call_audio.py."""

from __future__ import annotations

import subprocess

import pytest

from tests.sip.call_harness import CarrierProcess, carrier_netns, issue_carrier_certificate

# Qualify rounds (5 s each in the lab) the trunk must stay offline with an untrusted carrier.
OFFLINE_WATCH_S = 8.0


def _self_signed(address: str, workdir) -> tuple:
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "self-signed.crt", workdir / "self-signed.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={address}"]
        + ["-addext", f"subjectAltName=IP:{address}"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_trunk(call_settings):
    if not call_settings.trunk_is_tls or not call_settings.carrier_tls_port:
        pytest.skip("the dialled trunk is not TLS in this inventory")
    return call_settings.trunk["name"]


def _carrier(call_settings, workdir, tls_files) -> CarrierProcess:
    return CarrierProcess(call_settings, workdir, netns=carrier_netns(), tls_files=tls_files).start()


def _untrusted(kind: str, call_settings, target, workdir) -> tuple:
    if kind == "self-signed":
        return _self_signed(call_settings.carrier_host, workdir)
    # Issued by the trusted lab CA, for an address that is not the carrier's (TEST-NET-3).
    return issue_carrier_certificate(target, call_settings.lab_ca_dir, "203.0.113.9", workdir)


@pytest.mark.parametrize("kind", ["self-signed", "trusted CA, another address"])
def test_a_carrier_whose_certificate_does_not_verify_gets_no_call(
    kind, tls_trunk, call_settings, target, caller, passthrough_user, tmp_path
):
    carrier = _carrier(call_settings, tmp_path / "untrusted", _untrusted(kind, call_settings, target, tmp_path / "c"))
    try:
        target.check_output(f"asterisk -rx 'pjsip qualify {tls_trunk}'")
        target.wait_trunk(tls_trunk, "offline", timeout=OFFLINE_WATCH_S + 10)
        states = target.watch_trunk(tls_trunk, OFFLINE_WATCH_S)
        assert states == {"offline"}, f"a carrier with a {kind} certificate was taken online: {states}"
        r = caller.dial(passthrough_user, call_settings.allowed_number("0103"), "--duration", "0.5")
        assert r.get("status") == 503 and not r.get("connected"), r
        assert carrier.calls() == [], f"an INVITE reached the carrier with a {kind} certificate"
        if carrier.edge is not None:
            assert carrier.edge.events() == [], f"the edge with a {kind} certificate heard the appliance"
    finally:
        carrier.stop()


def test_the_same_carrier_with_a_verifiable_certificate_gets_the_call(
    tls_trunk, call_settings, target, caller, passthrough_user, tmp_path
):
    files = issue_carrier_certificate(target, call_settings.lab_ca_dir, call_settings.carrier_host, tmp_path / "c")
    carrier = _carrier(call_settings, tmp_path / "trusted", files)
    try:
        target.settle_trunk(tls_trunk)
        destination = call_settings.allowed_number("0104")
        mark = carrier.mark()
        r = caller.dial(passthrough_user, destination, "--duration", "0.5")
        assert r.get("status") == 200 and r["connected"], r
        c = carrier.call_for(destination, mark)
        assert carrier.arrival_transport(c) == "tls" and c["sdp_crypto"], c
    finally:
        carrier.stop()
