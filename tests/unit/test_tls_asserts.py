"""speaqr_asterisk refuses a TLS policy that is not TLS 1.2/1.3 with forward-secret AEAD suites,
and NAT settings that would send every client the public address, with a message that names the
variable (and the offending values). Runs the role's checks with ansible-playbook on the
controller (tests/unit/ansible/tls_cases.yml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.playbook import run_role_cases

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "tls_cases.yml"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "speaqr_asterisk" / "defaults" / "main.yml").read_text())
MOZILLA_INTERMEDIATE = DEFAULTS["speaqr_asterisk_tls_ciphers"]

CASES = {
    "defaults": ("sslv23", MOZILLA_INTERMEDIATE),
    "tls12-only": ("tlsv1_2", ["ECDHE-RSA-AES128-GCM-SHA256"]),
    "tls13-only": ("tlsv1_3", ["ECDHE-RSA-AES128-GCM-SHA256"]),
    "method-tlsv1": ("tlsv1", MOZILLA_INTERMEDIATE),
    "method-default": ("default", MOZILLA_INTERMEDIATE),
    "cbc-suite": ("sslv23", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"]),
    "static-rsa-suite": ("sslv23", ["AES128-GCM-SHA256"]),
    "tls13-suite-name": ("sslv23", ["TLS_AES_128_GCM_SHA256"]),
    "openssl-cipher-string": ("sslv23", "ECDHE+AESGCM:!aNULL"),
    "empty-list": ("sslv23", []),
    "duplicate": ("sslv23", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"]),
}
PUBLIC = "203.0.113.10"
NAT_CASES = {
    "one-to-one-nat": {
        "external_signaling_address": PUBLIC,
        "external_media_address": PUBLIC,
        "local_nets": ["10.0.0.0/16"],
    },
    "public-name": {
        "external_signaling_address": "sip.example.com",
        "external_media_address": PUBLIC,
        "local_nets": ["10.0.0.0/8", "fd00::/8"],
    },
    "external-without-local-nets": {"external_signaling_address": PUBLIC, "external_media_address": PUBLIC},
    "local-net-not-a-cidr": {"external_media_address": PUBLIC, "local_nets": ["10.0.0.0/16", "the office"]},
    "media-address-a-name": {"external_media_address": "sip.example.com", "local_nets": ["10.0.0.0/16"]},
    "local-nets-a-string": {"external_media_address": PUBLIC, "local_nets": "10.0.0.0/16"},
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    extra = {
        "cases": [{"name": n, "method": m, "ciphers": c} for n, (m, c) in CASES.items()]
        + [{"name": n, "method": "sslv23", "ciphers": MOZILLA_INTERMEDIATE, **v} for n, v in NAT_CASES.items()]
    }
    return run_role_cases(PLAYBOOK, extra, tmp_path_factory.mktemp("tls-asserts"))[0]


def test_the_default_policy_is_mozilla_intermediate_over_tls_1_2_and_1_3():
    assert DEFAULTS["speaqr_asterisk_tls_method"] == "sslv23"
    assert set(MOZILLA_INTERMEDIATE) == {
        f"ECDHE-{auth}-{cipher}"
        for auth in ("ECDSA", "RSA")
        for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    }
    # The lab's pjsua2 client speaks TLS 1.2 with an RSA certificate only.
    assert "ECDHE-RSA-AES128-GCM-SHA256" in MOZILLA_INTERMEDIATE


@pytest.mark.parametrize("case", ["defaults", "tls12-only", "tls13-only"])
def test_good_tls_policies_pass_every_check(outcomes, case):
    assert outcomes[case]["task"] == "none", outcomes[case]


@pytest.mark.parametrize(
    ("case", "task", "words"),
    [
        ("method-tlsv1", "Check the TLS method", ["speaqr_asterisk_tls_method", '"tlsv1"']),
        ("method-default", "Check the TLS method", ["speaqr_asterisk_tls_method", '"default"']),
        ("cbc-suite", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", '["ECDHE-RSA-AES128-SHA"]']),
        ("static-rsa-suite", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", "AES128-GCM-SHA256"]),
        ("tls13-suite-name", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", "TLS_AES_128_GCM_SHA256"]),
        ("openssl-cipher-string", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", "list"]),
        ("empty-list", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", "non-empty"]),
        ("duplicate", "Check the TLS cipher suites", ["speaqr_asterisk_tls_ciphers", "distinct"]),
    ],
)
def test_bad_tls_policies_are_refused_naming_the_variable(outcomes, case, task, words):
    got = outcomes[case]
    assert got["task"] == task, got
    for w in words:
        assert w in got["msg"], f"{case}: {w!r} not in {got['msg']!r}"


@pytest.mark.parametrize("case", ["one-to-one-nat", "public-name"])
def test_nat_settings_with_local_networks_pass(outcomes, case):
    assert outcomes[case]["task"] == "none", outcomes[case]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("external-without-local-nets", ["speaqr_asterisk_local_nets", "[]"]),
        ("local-net-not-a-cidr", ["speaqr_asterisk_local_nets", "the office"]),
        ("media-address-a-name", ["speaqr_asterisk_external_media_address", "sip.example.com"]),
        ("local-nets-a-string", ["speaqr_asterisk_local_nets", '"10.0.0.0/16"']),
    ],
)
def test_bad_nat_settings_are_refused_naming_the_variable(outcomes, case, words):
    got = outcomes[case]
    assert got["task"] == "Check the NAT settings", got
    for w in words:
        assert w in got["msg"], f"{case}: {w!r} not in {got['msg']!r}"
