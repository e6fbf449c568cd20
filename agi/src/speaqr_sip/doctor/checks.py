"""The troubleshooting list, point by point: each check judges what the probes observed.

Pure logic: every observation comes from a ``Probes`` object (``probes.SystemProbes`` on the
appliance, a fake in the unit tests)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from speaqr_sip.doctor import asterisk_cli as cli
from speaqr_sip.doctor.findings import Finding, fail, ok, warn
from speaqr_sip.validation import UserRow


class ProbeError(Exception):
    """A probe could not observe what it was asked (the message says why)."""


@dataclass(frozen=True)
class Certificate:
    not_after: datetime
    dns_names: tuple[str, ...]
    fingerprint: str  # SHA-256 of the DER form, hex
    key_matches: bool


@dataclass(frozen=True)
class Health:
    status: int
    body: dict[str, object]


class Probes(Protocol):
    def asterisk(self, command: str) -> str: ...  # raises ProbeError when Asterisk does not answer
    def certificate(self, cert_file: str, key_file: str) -> Certificate: ...
    def served_fingerprint(self, host: str, port: int) -> str: ...
    def unit_state(self, unit: str) -> str: ...  # systemctl is-active: active, inactive, failed...
    def firewall(self) -> str: ...  # nft list ruleset
    def user(self, username: str) -> UserRow | None: ...
    def users(self) -> list[tuple[str, bool]]: ...  # (username, enabled) of the users table
    def database_account(self, program: str) -> None: ...  # "agi" or "ari": its account connects
    def health(
        self,
    ) -> Health | None: ...  # /health/ready of the ARI application; None: not exposed
    def speaqr(self) -> None: ...  # connects with the configured key; ProbeError says why not
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Settings:
    ari_app: str
    fastagi_unit: str
    carrier: str  # the dialled trunk's endpoint ('' when the call service has none)
    speaqr_used: bool  # some call may use the speaqr processor
    certificate_warning_days: int


def _asterisk(probes: Probes, command: str) -> str | None:
    try:
        return probes.asterisk(command)
    except ProbeError:
        return None


def asterisk_running(probes: Probes) -> Finding:
    state = probes.unit_state("asterisk")
    if _asterisk(probes, "core show version") is None:
        return fail(
            "asterisk",
            f"Asterisk does not answer its CLI (asterisk.service: {state})",
            "systemctl status asterisk; journalctl -u asterisk",
        )
    return ok("asterisk", f"asterisk.service {state}, answering its CLI")


def tls(probes: Probes, settings: Settings) -> list[Finding]:
    shown = _asterisk(probes, "pjsip show transports")
    if shown is None:
        return [
            fail(
                "tls-listener",
                "cannot read the transports: Asterisk does not answer",
                "start Asterisk",
            )
        ]
    tls_transports = [
        (name, bind) for name, (proto, bind) in cli.transports(shown).items() if proto == "tls"
    ]
    if not tls_transports:
        return [
            fail(
                "tls-listener",
                "no TLS transport configured",
                "check pjsip.conf (speaqr_asterisk role)",
            )
        ]
    name, bind = tls_transports[0]
    transport = cli.key_values(probes.asterisk(f"pjsip show transport {name}"))
    domain = cli.key_values(probes.asterisk("pjsip show settings")).get("default_realm", "")
    host, _, port_text = bind.rpartition(":")
    port = int(port_text)
    connect_to = "127.0.0.1" if host in ("0.0.0.0", "[::]", "") else host.strip("[]")
    findings = []
    try:
        cert = probes.certificate(
            transport.get("cert_file", ""), transport.get("priv_key_file", "")
        )
    except ProbeError as exc:
        return [fail("tls-certificate", str(exc), "install a certificate (speaqr_tls role)")]
    try:
        served = probes.served_fingerprint(connect_to, port)
    except ProbeError as exc:
        findings.append(
            fail(
                "tls-listener",
                f"port {port} ({bind}): {exc}",
                "Asterisk's TLS transport is down: asterisk -rx 'pjsip show transports'",
            )
        )
    else:
        if served != cert.fingerprint:
            findings.append(
                fail(
                    "tls-listener",
                    f"port {port} serves another certificate than {transport.get('cert_file')}",
                    "reload the TLS transport: asterisk -rx 'module reload res_pjsip.so'",
                )
            )
        else:
            findings.append(
                ok(
                    "tls-listener",
                    f"port {port} ({bind}) answers TLS with {transport.get('cert_file')}",
                )
            )
    days = (cert.not_after - probes.now()).total_seconds() / 86400
    problems = []
    if not cert.key_matches:
        problems.append(f"the key {transport.get('priv_key_file')} does not match the certificate")
    if domain and domain not in cert.dns_names:
        problems.append(f"not valid for {domain} (names: {', '.join(cert.dns_names) or 'none'})")
    if days <= 0:
        problems.append(f"expired on {cert.not_after:%Y-%m-%d}")
    if problems:
        findings.append(
            fail(
                "tls-certificate",
                "; ".join(problems),
                "renew or replace it (playbooks/certificates.yml)",
            )
        )
    elif days < settings.certificate_warning_days:
        findings.append(
            warn(
                "tls-certificate",
                f"valid for {domain}, expires in {days:.0f} days ({cert.not_after:%Y-%m-%d})",
                "renew it (playbooks/certificates.yml)",
            )
        )
    else:
        findings.append(
            ok("tls-certificate", f"valid for {domain}, {days:.0f} days left, key matches")
        )
    return findings


def account(probes: Probes, username: str) -> list[Finding]:
    point = f"account {username}"
    findings = []
    try:
        row = probes.user(username)
    except ProbeError as exc:
        findings.append(
            fail(point, f"cannot read the users table: {exc}", "see the database point below")
        )
        row = None
    else:
        if row is None:
            findings.append(
                fail(
                    point,
                    "not in the users table: every call is refused (403)",
                    "add the user to speaqr_users and run playbooks/users.yml",
                )
            )
        elif not row.enabled:
            findings.append(
                fail(
                    point,
                    "disabled in the users table: every call is refused (403)",
                    "set enabled: true in speaqr_users and run playbooks/users.yml",
                )
            )
        else:
            findings.append(
                ok(point, f"enabled ({row.email}, {row.source_language} -> {row.target_language})")
            )
    endpoint_text = _asterisk(probes, f"pjsip show endpoint {username}")
    if endpoint_text is None or cli.not_found(endpoint_text):
        findings.append(
            fail(
                f"endpoint {username}",
                "no PJSIP endpoint: registration fails (401/403)",
                "run playbooks/users.yml (the user must be in speaqr_users)",
            )
        )
        return findings
    endpoint = cli.key_values(endpoint_text)
    media_problems = []
    if endpoint.get("media_encryption") != "sdes":
        media_problems.append(f"media_encryption is {endpoint.get('media_encryption')!r}, not sdes")
    if endpoint.get("media_encryption_optimistic", "false") not in ("false", "no"):
        media_problems.append("SRTP is only optimistic")
    allowed = cli.codecs(endpoint.get("allow", ""))
    if allowed != {"ulaw"}:
        media_problems.append(f"codecs {sorted(allowed)}, not PCMU (ulaw) only")
    if media_problems:
        findings.append(
            fail(
                f"media {username}", "; ".join(media_problems), "re-apply the speaqr_asterisk role"
            )
        )
    else:
        findings.append(ok(f"media {username}", "SRTP (SDES) required, PCMU only"))
    contacts = cli.aor_contacts(probes.asterisk(f"pjsip show aor {username}"))
    if not contacts:
        findings.append(
            fail(
                f"registration {username}",
                "not registered: calls from it are refused",
                "the client must REGISTER over TLS (check its username, password, port)",
            )
        )
    else:
        where = ", ".join(f"{c.uri} ({c.status})" for c in contacts)
        bad = [c for c in contacts if c.status == "Unavail"]
        if bad:
            findings.append(
                fail(
                    f"registration {username}",
                    f"registered but unreachable: {where}",
                    "the client's NAT may have dropped the connection: enable STUN, keep-alives",
                )
            )
        else:
            # Asterisk cuts long contact URIs in this listing: the address and port survive.
            findings.append(ok(f"registration {username}", f"registered from {where}"))
    return findings


def accounts_summary(probes: Probes) -> Finding:
    try:
        rows = probes.users()
    except ProbeError as exc:
        return fail(
            "accounts", f"cannot read the users table: {exc}", "see the database point below"
        )
    shown = _asterisk(probes, "pjsip show contacts") or ""
    registered = sorted(
        {m.split("/", 1)[0] for m in _contact_aors(shown)} & {name for name, _ in rows}
    )
    enabled = sum(1 for _, e in rows if e)
    return ok(
        "accounts",
        f"{len(rows)} in the database ({enabled} enabled), {len(registered)} registered"
        + (
            f": {', '.join(registered[:10])}" + (" ..." if len(registered) > 10 else "")
            if registered
            else ""
        ),
    )


def _contact_aors(text: str) -> list[str]:
    return [
        line.split()[1]
        for line in text.splitlines()
        if line.strip().startswith("Contact:") and "/sip" in line
    ]


def rtp(probes: Probes) -> Finding:
    shown = _asterisk(probes, "rtp show settings")
    ports = cli.rtp_port_range(shown or "")
    if ports is None:
        return fail("rtp-ports", "cannot read Asterisk's RTP port range", "start Asterisk")
    start, end = ports
    try:
        ruleset = probes.firewall()
    except ProbeError as exc:
        return warn(
            "rtp-ports", f"RTP {start}-{end}; cannot read the firewall: {exc}", "nft list ruleset"
        )
    if f"udp dport {start}-{end} accept" not in ruleset:
        return fail(
            "rtp-ports",
            f"the firewall does not accept UDP {start}-{end}: no audio",
            "re-apply the speaqr_base role (speaqr_base_firewall_udp_ports)",
        )
    return ok("rtp-ports", f"UDP {start}-{end} open in the firewall")


def ari_application(probes: Probes, settings: Settings) -> Finding:
    state = probes.unit_state("speaqr-ari")
    apps = cli.ari_apps(_asterisk(probes, "ari show apps") or "")
    if settings.ari_app not in apps:
        return fail(
            "ari-application",
            f"'{settings.ari_app}' is not connected to Asterisk (speaqr-ari: {state}): "
            "calls get 503",
            "systemctl status speaqr-ari; journalctl -u speaqr-ari",
        )
    health = probes.health()
    if health is not None and health.status != 200:
        failing = [k for k, v in health.body.items() if v is False and k != "ready"]
        return fail(
            "ari-application",
            f"connected but not ready ({', '.join(failing) or health.status})",
            "journalctl -u speaqr-ari",
        )
    return ok(
        "ari-application",
        f"'{settings.ari_app}' connected to ARI (speaqr-ari: {state})"
        + (", ready" if health is not None else ""),
    )


def fastagi(probes: Probes, settings: Settings) -> Finding:
    socket_state = probes.unit_state(f"{settings.fastagi_unit}.socket")
    service_state = probes.unit_state(settings.fastagi_unit)
    if socket_state != "active" or service_state == "failed":
        return fail(
            "fastagi",
            f"{settings.fastagi_unit}.socket {socket_state}, service {service_state}: "
            "calls get 503",
            f"journalctl -u {settings.fastagi_unit}; restart {settings.fastagi_unit}.socket",
        )
    return ok("fastagi", f"{settings.fastagi_unit}.socket {socket_state} (service {service_state})")


def database(probes: Probes) -> Finding:
    state = probes.unit_state("mariadb")
    problems = []
    for program, who in (
        ("agi", "the AGI check's account"),
        ("ari", "the ARI application's account"),
    ):
        try:
            probes.database_account(program)
        except ProbeError as exc:
            problems.append(f"{who}: {exc}")
    if problems:
        return fail(
            "database", f"mariadb {state}; " + "; ".join(problems), "systemctl status mariadb"
        )
    return ok("database", f"mariadb {state}; both accounts connect")


def speaqr(probes: Probes, settings: Settings) -> Finding:
    if not settings.speaqr_used:
        return ok("speaqr", "no call uses the speaqr processor")
    try:
        probes.speaqr()
    except ProbeError as exc:
        return fail(
            "speaqr",
            str(exc),
            "check [speaqr] url and api_key (speaqr_ari_speaqr_*); calls fall back "
            "as speaqr_ari_processor_fallback says",
        )
    return ok("speaqr", "reachable, the API key accepted")


def carrier(probes: Probes, settings: Settings) -> Finding:
    if not settings.carrier:
        return ok("carrier", "the call service has no carrier trunk")
    point = f"carrier {settings.carrier}"
    registrations = cli.registration_states(_asterisk(probes, "pjsip show registrations") or "")
    state = registrations.get(settings.carrier)
    if state is not None and state != "Registered":
        return fail(
            point,
            f"outbound registration {state}: calls get 503",
            "check the carrier's credentials: asterisk -rx 'pjsip show registrations'",
        )
    contacts = cli.aor_contacts(_asterisk(probes, f"pjsip show aor {settings.carrier}") or "")
    if any(c.status == "Unavail" for c in contacts) and not any(
        c.status == "Avail" for c in contacts
    ):
        return fail(
            point,
            "does not answer its qualify OPTIONS (Unavailable): calls get 503",
            "check the carrier's address, port and TLS certificate",
        )
    status = ", ".join(sorted({c.status for c in contacts})) or "no contact"
    return ok(point, f"{status}" + (f", registration {state}" if state else ""))


def diagnose(probes: Probes, settings: Settings, usernames: list[str]) -> list[Finding]:
    """The whole list, in the service description's order."""
    steps: list[Callable[[], Finding | list[Finding]]] = [
        lambda: asterisk_running(probes),
        lambda: tls(probes, settings),
    ]
    if usernames:
        steps += [functools.partial(account, probes, u) for u in usernames]
    else:
        steps.append(functools.partial(accounts_summary, probes))
    steps += [
        lambda: rtp(probes),
        lambda: ari_application(probes, settings),
        lambda: fastagi(probes, settings),
        lambda: database(probes),
        lambda: speaqr(probes, settings),
        lambda: carrier(probes, settings),
    ]
    findings: list[Finding] = []
    for step in steps:
        try:
            result = step()
        except ProbeError as exc:
            result = fail("doctor", f"a probe failed: {exc}", "")
        findings.extend(result if isinstance(result, list) else [result])
    return findings
