"""speaqr_tls in provided mode refuses, before installing anything, a certificate that is expired
or not yet valid and a private key that is not the certificate's, naming the variable; a valid
certificate with its key passes, given as text or as controller files. In acme mode it refuses
settings certbot could not use (no https directory, no contact, no or bad names, no renewal
window), naming them. Runs the role's checks
with ansible-playbook on the controller (tests/unit/ansible/certificate_cases.yml)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.playbook import run_role_cases

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "certificate_cases.yml"
DOMAIN = "sip.example.com"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def certificate_pem(key: ec.EllipticCurvePrivateKey, valid_from: datetime.datetime, valid_to: datetime.datetime) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("certificate-asserts")
    key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    valid = certificate_pem(key, NOW - DAY, NOW + 90 * DAY)
    (tmp / "fullchain.pem").write_text(valid)
    (tmp / "key.pem").write_text(key_pem(key))
    (tmp / "other-key.pem").write_text(key_pem(other_key))
    cases = [
        {"name": "valid-text", "certificate": valid, "private_key": key_pem(key)},
        {"name": "valid-files", "certificate_src": str(tmp / "fullchain.pem"), "private_key_src": str(tmp / "key.pem")},
        {
            "name": "expired",
            "certificate": certificate_pem(key, NOW - 100 * DAY, NOW - 10 * DAY),
            "private_key": key_pem(key),
        },
        {
            "name": "not-yet-valid",
            "certificate": certificate_pem(key, NOW + 2 * DAY, NOW + 90 * DAY),
            "private_key": key_pem(key),
        },
        {"name": "other-key-text", "certificate": valid, "private_key": key_pem(other_key)},
        {
            "name": "other-key-file",
            "certificate_src": str(tmp / "fullchain.pem"),
            "private_key_src": str(tmp / "other-key.pem"),
        },
        {"name": "acme-valid", "mode": "acme"},
        {"name": "acme-plain-http-directory", "mode": "acme", "acme_directory": "http://acme.example.com/directory"},
        {"name": "acme-no-email", "mode": "acme", "acme_email": ""},
        {"name": "acme-no-domains", "mode": "acme", "acme_domains": []},
        {"name": "acme-bad-domain", "mode": "acme", "acme_domains": ["sip.example.com", "two words"]},
        {"name": "acme-no-renewal-window", "mode": "acme", "acme_renew_before_days": 0},
    ]
    results, output = run_role_cases(PLAYBOOK, {"cases": cases}, tmp)
    return {"results": results, "output": output}


@pytest.mark.parametrize("case", ["valid-text", "valid-files"])
def test_a_valid_certificate_with_its_own_key_passes(outcomes, case):
    assert outcomes["results"][case]["task"] == "none", outcomes["results"][case]


@pytest.mark.parametrize("case", ["expired", "not-yet-valid"])
def test_a_certificate_not_valid_now_is_refused_naming_the_variable_and_dates(outcomes, case):
    got = outcomes["results"][case]
    assert got["task"] == "Check that the provided certificate is valid now", got
    assert got["msg"].startswith("speaqr_tls_certificate:"), got
    assert DOMAIN in got["msg"] and "refusing to deploy" in got["msg"], got


@pytest.mark.parametrize(
    ("case", "variable"),
    [("other-key-text", "speaqr_tls_private_key"), ("other-key-file", "speaqr_tls_private_key_src")],
)
def test_a_key_that_is_not_the_certificates_is_refused_naming_the_variable(outcomes, case, variable):
    got = outcomes["results"][case]
    assert got["task"] == "Check that the provided private key is the certificate's", got
    assert got["msg"].startswith(f"{variable} is not the key of the certificate"), got
    assert DOMAIN in got["msg"], got


def test_no_private_key_reaches_the_output(outcomes):
    assert "PRIVATE KEY" not in outcomes["output"]


def test_usable_acme_settings_pass(outcomes):
    assert outcomes["results"]["acme-valid"]["task"] == "none", outcomes["results"]["acme-valid"]


@pytest.mark.parametrize(
    ("case", "shown"),
    [
        ("acme-plain-http-directory", '(got "http://acme.example.com/directory")'),
        ("acme-no-email", 'speaqr_tls_acme_email a contact address (got "")'),
        ("acme-no-domains", "(got [])"),
        ("acme-bad-domain", '"two words"'),
        ("acme-no-renewal-window", "a number of days >= 1 (got 0)"),
    ],
)
def test_unusable_acme_settings_are_refused_showing_the_value(outcomes, case, shown):
    got = outcomes["results"][case]
    assert got["task"] == "Check the ACME settings", got
    assert got["msg"].startswith('speaqr_tls_mode is "acme"') and shown in got["msg"], got
