"""speaqr-doctor's judgement: a healthy appliance gives only ok; each fault a probe observes is
named at its point with a hint. The CLI texts are shaped like Asterisk 22's output."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from speaqr_sip.doctor import asterisk_cli as cli
from speaqr_sip.doctor.checks import Certificate, Health, ProbeError, Settings, diagnose
from speaqr_sip.doctor.findings import Status, failed, render_text
from speaqr_sip.validation import UserRow

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

TRANSPORTS = """
Transport:  <TransportId........>  <Type>  <cos>  <tos>  <BindAddress....................>
==========================================================================================

Transport:  transport-tls             tls      0      0  0.0.0.0:5061
Transport:  transport-carrier-udp     udp      0      0  0.0.0.0:5060

Objects found: 2
"""
TRANSPORT = """
 ParameterName                : ParameterValue
 ==================================================================
 bind                         : 0.0.0.0:5061
 cert_file                    : /etc/speaqr-sip/tls/server.crt
 priv_key_file                : /etc/speaqr-sip/tls/server.key
 protocol                     : tls
"""
SETTINGS = (
    " default_realm                               : sip.speaqr.lab\n keep_alive_interval : 30\n"
)
ENDPOINT = """
 Endpoint:  alice                                                Not in use    0 of inf
 ParameterName                      : ParameterValue
 =========================================================================================
 allow                              : (ulaw)
 media_encryption                   : sdes
 media_encryption_optimistic        : false
"""
AOR = """
      Aor:  alice                                                1
    Contact:  alice/sip:alice@198.51.100.11:40321;transport=TLS;ob f3c2a1b0e9 NonQual  nan
"""
AOR_CARRIER = """
      Aor:  lab-carrier                                          0
    Contact:  lab-carrier/sip:198.51.100.40:5090;transport=tls 9a8b7c6d5e Avail  1.203
"""
REGISTRATIONS = """
 <Registration/ServerURI..............................>  <Auth....................>  <Status.......>
 ==========================================================================================

 lab-carrier/sip:198.51.100.40:5090;transport=tls  lab-carrier-auth  Registered  (exp. 45s)
"""
CONTACTS = """
  Contact:  <Aor/ContactUri..........................> <Hash....> <Status> <RTT(ms)..>
==========================================================================================

  Contact:  alice/sip:alice@198.51.100.11:40321;transport=TLS;ob f3c2a1b0e9 NonQual         nan
  Contact:  lab-carrier/sip:198.51.100.40:5090;transport=tls 9a8b7c6d5e Avail         1.203
"""
RTP = "\nGeneral Settings:\n----------------\nPort start:      10000\nPort end:        20000\n"
APPS = "Application Name\n=========================\nloopback\n"
RULESET = "table inet speaqr {\n chain input {\n  udp dport 10000-20000 accept\n }\n}\n"


class FakeProbes:
    def __init__(self) -> None:
        self.cli = {
            "core show version": "Asterisk 22.10.1",
            "pjsip show transports": TRANSPORTS,
            "pjsip show transport transport-tls": TRANSPORT,
            "pjsip show settings": SETTINGS,
            "pjsip show endpoint alice": ENDPOINT,
            "pjsip show aor alice": AOR,
            "pjsip show aor lab-carrier": AOR_CARRIER,
            "pjsip show registrations": REGISTRATIONS,
            "pjsip show contacts": CONTACTS,
            "rtp show settings": RTP,
            "ari show apps": APPS,
        }
        self.asterisk_down = False
        self.cert = Certificate(NOW + timedelta(days=300), ("sip.speaqr.lab",), "ab12", True)
        self.served: str | ProbeError = "ab12"
        self.units = {
            "asterisk": "active",
            "speaqr-ari": "active",
            "mariadb": "active",
            "speaqr-fastagi.socket": "active",
            "speaqr-fastagi": "active",
        }
        self.ruleset = RULESET
        self.rows = {"alice": UserRow("alice", "alice@speaqr.lab", "en-us", "es-es", "F", True)}
        self.db_error: ProbeError | None = None
        self.ready = Health(200, {"ready": True, "ari": True, "database": True})
        self.speaqr_error: ProbeError | None = None

    def asterisk(self, command: str) -> str:
        if self.asterisk_down:
            raise ProbeError("Asterisk is not running")
        return self.cli.get(command, "Unable to find object x.")

    def certificate(self, cert_file: str, key_file: str) -> Certificate:
        return self.cert

    def served_fingerprint(self, host: str, port: int) -> str:
        if isinstance(self.served, ProbeError):
            raise self.served
        return self.served

    def unit_state(self, unit: str) -> str:
        return self.units.get(unit, "inactive")

    def firewall(self) -> str:
        return self.ruleset

    def user(self, username: str) -> UserRow | None:
        if self.db_error:
            raise self.db_error
        return self.rows.get(username)

    def users(self) -> list[tuple[str, bool]]:
        if self.db_error:
            raise self.db_error
        return [(r.username, r.enabled) for r in self.rows.values()]

    def database_account(self, program: str) -> None:
        if self.db_error:
            raise self.db_error

    def health(self) -> Health | None:
        return self.ready

    def speaqr(self) -> None:
        if self.speaqr_error:
            raise self.speaqr_error

    def now(self) -> datetime:
        return NOW


SETTINGS_ = Settings("loopback", "speaqr-fastagi", "lab-carrier", True, 21)


def by_point(findings):
    return {f.point: f for f in findings}


def test_a_healthy_appliance_gives_only_ok_at_every_point():
    findings = diagnose(FakeProbes(), SETTINGS_, ["alice"])
    points = [f.point for f in findings]
    assert points == [
        "asterisk",
        "tls-listener",
        "tls-certificate",
        "account alice",
        "media alice",
        "registration alice",
        "rtp-ports",
        "ari-application",
        "fastagi",
        "database",
        "speaqr",
        "carrier lab-carrier",
    ]
    assert {f.status for f in findings} == {Status.OK}, render_text(findings)
    assert not failed(findings)
    found = by_point(findings)
    assert "198.51.100.11:40321" in found["registration alice"].detail
    assert "Registered" in found["carrier lab-carrier"].detail


def test_without_a_user_the_accounts_are_summarised():
    found = by_point(diagnose(FakeProbes(), SETTINGS_, []))
    assert found["accounts"].detail == "1 in the database (1 enabled), 1 registered: alice"


def fault(name: str, probes: FakeProbes) -> None:
    if name == "unregistered":
        probes.cli["pjsip show aor alice"] = "      Aor:  alice   1\n"
    elif name == "disabled":
        probes.rows["alice"] = dataclasses.replace(probes.rows["alice"], enabled=False)
    elif name == "unknown user":
        probes.rows.clear()
        probes.cli.pop("pjsip show endpoint alice")
    elif name == "rtp optional":
        probes.cli["pjsip show endpoint alice"] = ENDPOINT.replace(": sdes", ": no")
    elif name == "other codecs":
        probes.cli["pjsip show endpoint alice"] = ENDPOINT.replace("(ulaw)", "(ulaw|alaw|g722)")
    elif name == "certificate expired":
        probes.cert = dataclasses.replace(probes.cert, not_after=NOW - timedelta(days=1))
    elif name == "key mismatch":
        probes.cert = dataclasses.replace(probes.cert, key_matches=False)
    elif name == "wrong name":
        probes.cert = dataclasses.replace(probes.cert, dns_names=("other.example",))
    elif name == "stale certificate served":
        probes.served = "ffff"
    elif name == "listener down":
        probes.served = ProbeError("connection refused")
    elif name == "rtp closed":
        probes.ruleset = "table inet speaqr { }"
    elif name == "ari down":
        probes.cli["ari show apps"] = "Application Name\n=====\n"
        probes.units["speaqr-ari"] = "inactive"
    elif name == "ari not ready":
        probes.ready = Health(503, {"ready": False, "ari": True, "database": False})
    elif name == "fastagi failed":
        probes.units["speaqr-fastagi"] = "failed"
    elif name == "database down":
        probes.db_error = ProbeError("cannot connect as speaqr_agi: Can't connect")
        probes.units["mariadb"] = "inactive"
    elif name == "speaqr refused":
        probes.speaqr_error = ProbeError(
            "https://speaqr refused the connection: bad_authentication"
        )
    elif name == "carrier unregistered":
        probes.cli["pjsip show registrations"] = REGISTRATIONS.replace(
            "Registered  ", "Rejected    "
        )
    elif name == "carrier unavailable":
        probes.cli["pjsip show aor lab-carrier"] = AOR_CARRIER.replace("Avail", "Unavail")
    elif name == "asterisk down":
        probes.asterisk_down = True
        probes.units["asterisk"] = "inactive"


@pytest.mark.parametrize(
    ("name", "point", "words"),
    [
        ("unregistered", "registration alice", "not registered"),
        ("disabled", "account alice", "disabled"),
        ("unknown user", "account alice", "not in the users table"),
        ("rtp optional", "media alice", "media_encryption is 'no'"),
        ("other codecs", "media alice", "not PCMU (ulaw) only"),
        ("certificate expired", "tls-certificate", "expired"),
        ("key mismatch", "tls-certificate", "does not match"),
        ("wrong name", "tls-certificate", "not valid for sip.speaqr.lab"),
        ("stale certificate served", "tls-listener", "serves another certificate"),
        ("listener down", "tls-listener", "connection refused"),
        ("rtp closed", "rtp-ports", "does not accept UDP 10000-20000"),
        ("ari down", "ari-application", "'loopback' is not connected"),
        ("ari not ready", "ari-application", "not ready (database)"),
        ("fastagi failed", "fastagi", "service failed"),
        ("database down", "database", "Can't connect"),
        ("speaqr refused", "speaqr", "bad_authentication"),
        ("carrier unregistered", "carrier lab-carrier", "registration Rejected"),
        ("carrier unavailable", "carrier lab-carrier", "Unavailable"),
        ("asterisk down", "asterisk", "does not answer"),
    ],
)
def test_each_fault_is_named_at_its_point_with_a_hint(name, point, words):
    probes = FakeProbes()
    fault(name, probes)
    findings = diagnose(probes, SETTINGS_, ["alice"])
    found = by_point(findings)
    assert found[point].status is Status.FAIL, render_text(findings)
    assert words in found[point].detail and found[point].hint
    assert failed(findings)
    healthy = by_point(diagnose(FakeProbes(), SETTINGS_, ["alice"]))
    newly_failing = {
        p
        for p, f in found.items()
        if f.status is Status.FAIL and (p not in healthy or healthy[p].status is Status.OK)
    }
    assert point in newly_failing


def test_a_certificate_close_to_its_end_is_a_warning_not_a_failure():
    probes = FakeProbes()
    probes.cert = dataclasses.replace(probes.cert, not_after=NOW + timedelta(days=10))
    found = by_point(diagnose(probes, SETTINGS_, ["alice"]))
    assert found["tls-certificate"].status is Status.WARN
    assert "expires in 10 days" in found["tls-certificate"].detail


def test_asterisk_cli_parsers_read_the_shapes_asterisk_prints():
    assert cli.transports(TRANSPORTS)["transport-tls"] == ("tls", "0.0.0.0:5061")
    assert cli.key_values(TRANSPORT)["cert_file"] == "/etc/speaqr-sip/tls/server.crt"
    assert cli.registration_states(REGISTRATIONS) == {"lab-carrier": "Registered"}
    assert cli.rtp_port_range(RTP) == (10000, 20000)
    assert cli.ari_apps(APPS) == {"loopback"}
    assert cli.codecs("(ulaw|alaw)") == {"ulaw", "alaw"}
    assert [c.status for c in cli.aor_contacts(AOR)] == ["NonQual"]
