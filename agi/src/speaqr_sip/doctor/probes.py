"""What the doctor observes on the appliance: Asterisk's CLI, systemd, nftables, openssl, the
database accounts of agi.toml and ari.toml, the ARI application's health endpoint, Speaqr."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import socketio

from speaqr_sip.config import AgiConfig, AriAppConfig, DatabaseConfig
from speaqr_sip.doctor.checks import Certificate, Health, ProbeError
from speaqr_sip.processors import speaqr as speaqr_processor
from speaqr_sip.userdb import DatabaseUnavailable, UserDirectory
from speaqr_sip.validation import UserRow

TIMEOUT = 5.0


def _run(*args: str) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT * 2, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"{args[0]}: {exc}") from exc
    if p.returncode != 0:
        raise ProbeError(f"{' '.join(args[:2])}: {(p.stderr or p.stdout).strip()[:200]}")
    return p.stdout


def _connect(config: DatabaseConfig) -> Any:
    import pymysql

    try:
        return pymysql.connect(
            unix_socket=config.unix_socket or None,
            host=config.host,
            port=config.port,
            user=config.user,
            password=config.password,
            database=config.name,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
    except pymysql.MySQLError as exc:
        raise ProbeError(
            f"cannot connect as {config.user}: {exc.args[-1] if exc.args else exc}"
        ) from exc


class SystemProbes:
    def __init__(self, agi: AgiConfig, ari: AriAppConfig) -> None:
        self._agi = agi
        self._ari = ari

    def asterisk(self, command: str) -> str:
        out = _run("asterisk", "-rx", command)
        if "Unable to connect to remote asterisk" in out:
            raise ProbeError("Asterisk is not running")
        return out

    def certificate(self, cert_file: str, key_file: str) -> Certificate:
        if not cert_file:
            raise ProbeError("the TLS transport names no certificate file")
        text = _run(
            "openssl", "x509", "-in", cert_file, "-noout", "-enddate", "-ext", "subjectAltName"
        )
        end = re.search(r"notAfter=(.+)", text)
        if not end:
            raise ProbeError(f"cannot read the end date of {cert_file}")
        not_after = datetime.strptime(end.group(1).strip(), "%b %d %H:%M:%S %Y %Z").replace(
            tzinfo=UTC
        )
        names = tuple(re.findall(r"DNS:([^,\s]+)", text))
        der = subprocess.run(
            ["openssl", "x509", "-in", cert_file, "-outform", "DER"],
            capture_output=True,
            check=True,
        ).stdout
        cert_key = _run("openssl", "x509", "-in", cert_file, "-noout", "-pubkey")
        try:
            key = _run("openssl", "pkey", "-in", key_file, "-pubout")
        except ProbeError:
            key = ""
        return Certificate(not_after, names, hashlib.sha256(der).hexdigest(), key == cert_key)

    def served_fingerprint(self, host: str, port: int) -> str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((host, port), timeout=TIMEOUT) as raw,
                context.wrap_socket(raw) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"no TLS handshake with {host}:{port}: {exc}") from exc
        if der is None:
            raise ProbeError("no certificate served")
        return hashlib.sha256(der).hexdigest()

    def unit_state(self, unit: str) -> str:
        p = subprocess.run(
            ["systemctl", "is-active", unit], capture_output=True, text=True, check=False
        )
        return p.stdout.strip() or "unknown"

    def firewall(self) -> str:
        return _run("nft", "list", "ruleset")

    def user(self, username: str) -> UserRow | None:
        try:
            return UserDirectory(self._agi.database).lookup(username)
        except DatabaseUnavailable as exc:
            raise ProbeError(str(exc)) from exc

    def users(self) -> list[tuple[str, bool]]:
        conn = _connect(self._agi.database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT username, enabled FROM users ORDER BY username")
                return [(str(name), bool(enabled)) for name, enabled in cur.fetchall()]
        finally:
            conn.close()

    def database_account(self, program: str) -> None:
        conn = _connect(self._agi.database if program == "agi" else self._ari.database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def health(self) -> Health | None:
        listen = self._ari.metrics.listen
        if not listen:
            return None
        host, _, port = listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        url = f"http://{host}:{port}/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as r:  # noqa: S310 - a fixed local URL
                return Health(r.status, json.loads(r.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            return Health(exc.code, json.loads(exc.read() or b"{}"))
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{url}: {exc}") from exc

    def speaqr(self) -> None:
        config = self._ari.speaqr
        parts = urlsplit(config.url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        try:
            socket.create_connection(
                (parts.hostname or "", port), timeout=config.connect_timeout
            ).close()
        except OSError as exc:
            raise ProbeError(f"{config.url} unreachable: {exc}") from exc
        asyncio.run(self._speaqr_connect())

    async def _speaqr_connect(self) -> None:
        config = self._ari.speaqr
        client = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        try:
            await speaqr_processor.connect(client, config)
        except (TimeoutError, socketio.exceptions.ConnectionError) as exc:
            raise ProbeError(f"{config.url} refused the connection: {exc or 'timeout'}") from exc
        finally:
            await client.disconnect()

    def now(self) -> datetime:
        return datetime.now(UTC)
