"""speaqr_asterisk refuses bad carrier lists before writing anything, with a message that names
the variable and the carrier. Runs the role's carrier checks with ansible-playbook on the
controller (tests/unit/ansible/carrier_cases.yml); a valid list gets past every check and only
stops at the first file it would write (no Asterisk here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.playbook import run_role_cases

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "carrier_cases.yml"

GOOD = {
    "name": "carrier1",
    "host": "203.0.113.10",
    "port": 5060,
    "transport": "udp",
    "allow_insecure_transport": True,
    "local_port": 5080,
    "auth": "ip",
    "srtp": False,
    "callerid": "fixed",
    "callerid_number": "+34910000000",
}

CASES = {
    "valid-udp": [GOOD],
    "valid-tls-registration": [
        {"name": "tls1", "host": "sip.carrier.example", "auth": "registration", "username": "u1", "password": "pw"}
    ],
    "udp-without-allow": [{**GOOD, "allow_insecure_transport": False}],
    "tcp-without-allow-key": [
        {k: v for k, v in {**GOOD, "transport": "tcp"}.items() if k != "allow_insecure_transport"}
    ],
    "udp-without-local-port": [{k: v for k, v in GOOD.items() if k != "local_port"}],
    "udp-on-the-tls-port": [{**GOOD, "local_port": 5061}],
    "registration-without-password": [{**GOOD, "auth": "registration", "username": "u1"}],
    "fixed-callerid-without-number": [{**GOOD, "callerid_number": ""}],
    "national-without-country": [{**GOOD, "number_format": "national"}],
    "unknown-key": [{**GOOD, "transprot": "udp"}],
    "udp-with-a-dns-name": [{**GOOD, "host": "sip.carrier.example"}],
    "duplicate-names": [GOOD, {**GOOD, "local_port": 5081}],
    "bad-name": [{**GOOD, "name": "carrier one"}],
    "shared-port-two-addresses": [GOOD, {**GOOD, "name": "carrier2", "local_address": "198.51.100.1"}],
    "valid-qualify-off": [{**GOOD, "qualify_frequency": 0}],
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    extra = {"cases": [{"name": n, "carriers": c} for n, c in CASES.items()]}
    return run_role_cases(PLAYBOOK, extra, tmp_path_factory.mktemp("carrier-asserts"))[0]


@pytest.mark.parametrize("case", ["valid-udp", "valid-tls-registration"])
def test_valid_carriers_pass_every_check(outcomes, case):
    assert outcomes[case]["task"] == "Render pjsip_carriers.conf", outcomes[case]


@pytest.mark.parametrize(("case", "qualify"), [("valid-udp", [30]), ("valid-qualify-off", [0])])
def test_carriers_are_qualified_every_30_s_unless_they_say_otherwise(outcomes, case, qualify):
    assert outcomes[case]["qualify"] == qualify, outcomes[case]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("udp-without-allow", ["speaqr_asterisk_carriers[0] (carrier1)", "allow_insecure_transport: true"]),
        ("tcp-without-allow-key", ["speaqr_asterisk_carriers[0] (carrier1)", "allow_insecure_transport: true"]),
        ("udp-without-local-port", ["speaqr_asterisk_carriers[0] (carrier1)", "local_port"]),
        ("udp-on-the-tls-port", ["speaqr_asterisk_carriers[0] (carrier1)", "not the TLS port"]),
        ("registration-without-password", ["speaqr_asterisk_carriers[0] (carrier1)", "registration with username"]),
        ("fixed-callerid-without-number", ["speaqr_asterisk_carriers[0] (carrier1)", "callerid_number"]),
        ("national-without-country", ["speaqr_asterisk_carriers[0] (carrier1)", "national_country_code"]),
        ("unknown-key", ["speaqr_asterisk_carriers[0] (carrier1)", "unknown key(s) transprot"]),
        ("udp-with-a-dns-name", ["speaqr_asterisk_carriers[0] (carrier1)", "addresses as IP addresses"]),
        ("duplicate-names", ["speaqr_asterisk_carriers", 'unique "name"']),
        ("bad-name", ["speaqr_asterisk_carriers[0] (carrier one)"]),
        ("shared-port-two-addresses", ["speaqr_asterisk_carriers", "same local_address"]),
    ],
)
def test_bad_carriers_are_refused_naming_the_variable(outcomes, case, words):
    got = outcomes[case]
    assert got["task"] != "Render pjsip_carriers.conf", f"{case} got past the checks: {got}"
    for w in words:
        assert w in got["msg"], f"{case}: {w!r} not in {got['msg']!r}"
