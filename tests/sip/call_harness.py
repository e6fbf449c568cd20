"""Harness of the call-service tests (tests/sip/test_call_*.py): the stand-in carrier, the
service's settings as the inventory has them, and probes of the target (call records, ARI).

Where things come from (environment overrides first, then the inventory through testinfra):

| what | environment | inventory |
|---|---|---|
| stand-in carrier | ``SPEAQR_CARRIER_LISTEN`` (``ADDR:PORT``) | ``speaqr_lab_carrier_host``, ``_port``, ``_tls_port`` |
| carrier caller-ID and number format | - | ``speaqr_ari_call_carrier`` (one of ``speaqr_asterisk_carriers``) |
| answer timeout, policy | - | ``speaqr_ari_call_answer_timeout``, ``speaqr_ari_policy_*`` |
| users' processors | - | ``speaqr_users[].processor``, ``speaqr_ari_processor`` |

The carrier runs on a host of its own where the lab has one (``SPEAQR_CARRIER_NETNS``: the lab's
carrier host on the public segment, so the appliance reaches it as it reaches a carrier on the
internet, through its firewall and NAT), else in the target's namespace (``SPEAQR_TARGET_NETNS``).
When the trunk the service dials is TLS, the carrier listens for TLS too, with a certificate for its
address that the appliance's lab CA issues for the test (``issue_carrier_certificate``), and takes
SRTP as the trunk offers it.
Without ``speaqr_lab_carrier_host`` (a staging inventory with a real carrier) the call tests skip:
they need a callee they control.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sip.carrier_edge import CarrierEdge, registers, stop_child

ROOT = Path(__file__).resolve().parents[2]

# Behaviour of the stand-in carrier by the dialled number's last digits (tests/carrier/README.md).
CARRIER_RULES = {
    "0486": "busy",
    "0480": "noanswer",
    "0403": "reject:403",
    "0404": "reject:404",
    "0777": "echo",
    "0555": "hangup:2",
    "0560": "hangup:60",
    "0183": "early:3",
}
CARRIER_TONE_HZ = 600.0
ARI_SERVICE = "speaqr-ari.service"
# What a target looks like once every call is over (Target.leftovers).
NOTHING_LEFT = {"channels": [], "bridges": [], "relay_sockets": 0, "processor_connections": 0}
# Asterisk's qualify_timeout (default): an OPTIONS unanswered this long marks the trunk offline.
QUALIFY_TIMEOUT_S = 3.0


def number(prefix: str, suffix: str = "") -> str:
    """A test number: ``prefix`` (e.g. "+34") padded to 11 digits ending in ``suffix``."""
    digits = prefix.lstrip("+")
    body = "9112" + "3" * 10
    need = 11 - len(digits) - len(suffix)
    return "+" + digits + body[:need] + suffix


def carrier_transport(carrier: dict) -> str:
    """A speaqr_asterisk_carriers item's transport (the role's default: tls)."""
    return carrier.get("transport", "tls")


@dataclass
class CallSettings:
    carrier_host: str
    carrier_port: int
    callerid: str  # user | fixed
    callerid_number: str
    number_format: str
    answer_timeout: float
    allowed_prefixes: list[str]
    blocked_prefixes: list[str]
    max_calls_per_user: int
    max_calls_total: int
    user_processors: dict[str, str] = field(default_factory=dict)  # username -> passthrough|speaqr
    default_processor: str = "passthrough"
    fake_speaqr_shift_hz: float = 300.0
    fake_speaqr_enabled: bool = False
    ari_port: int = 8088
    trunk: dict = field(default_factory=dict)  # the speaqr_asterisk_carriers item the service dials
    carriers: list[dict] = field(default_factory=list)  # every speaqr_asterisk_carriers item present
    carrier_tls_port: int = 0
    lab_ca_dir: str = ""  # where the appliance keeps the lab CA (speaqr_tls_lab_ca_dir)

    @property
    def trunk_is_tls(self) -> bool:
        return bool(self.trunk) and carrier_transport(self.trunk) == "tls"

    @property
    def trunk_qualified(self) -> bool:
        return int(self.trunk.get("qualify_frequency") or 0) > 0

    def processor_of(self, user: str) -> str:
        p = self.user_processors.get(user) or ""
        if p in ("", "default"):
            p = self.default_processor
        return "passthrough" if p == "auto" else p

    def allowed_number(self, suffix: str = "") -> str:
        prefix = next((p for p in self.allowed_prefixes if len(p) <= 4), self.allowed_prefixes[0])
        return number(prefix, suffix)

    def expected_callerid(self, user: str) -> str:
        return self.callerid_number if self.callerid == "fixed" else user


def _templated(host, var: str):
    res = host.ansible("debug", f"var={var}", check=False)
    value = res.get(var)
    if value is None or (isinstance(value, str) and value.startswith("VARIABLE IS NOT DEFINED")):
        return None
    return value


def load_call_settings(host) -> CallSettings:
    if host.backend.NAME != "ansible":
        pytest.skip("the call tests read the inventory: run them with testinfra's ansible backend")
    names = [
        "speaqr_lab_carrier_host",
        "speaqr_lab_carrier_port",
        "speaqr_lab_carrier_tls_port",
        "speaqr_asterisk_carriers",
        "speaqr_tls_lab_ca_dir",
        "speaqr_ari_call_carrier",
        "speaqr_ari_call_answer_timeout",
        "speaqr_ari_policy_allowed_prefixes",
        "speaqr_ari_policy_blocked_prefixes",
        "speaqr_ari_policy_max_calls_per_user",
        "speaqr_ari_policy_max_calls_total",
        "speaqr_users",
        "speaqr_ari_processor",
        "speaqr_ari_fake_speaqr_shift_hz",
        "speaqr_ari_fake_speaqr_enabled",
        "speaqr_asterisk_http_port",
    ]
    expr = "[" + ",".join(f"{n}|default(None)" for n in names) + "]"
    values = host.ansible("debug", f"var={expr}", check=False).get(expr)
    if not isinstance(values, list):
        pytest.fail(f"could not read the inventory of the host under test: {values!r}")
    v = dict(zip(names, values, strict=True))
    listen = os.environ.get("SPEAQR_CARRIER_LISTEN")
    if listen:
        chost, _, cport = listen.rpartition(":")
    else:
        chost, cport = v["speaqr_lab_carrier_host"], v["speaqr_lab_carrier_port"] or 5070
    if not chost:
        pytest.skip("no stand-in carrier in this inventory (speaqr_lab_carrier_host is not set)")
    carrier = v["speaqr_ari_call_carrier"] or {}
    return CallSettings(
        carrier_host=str(chost),
        carrier_port=int(cport),
        callerid=carrier.get("callerid", "user"),
        callerid_number=str(carrier.get("callerid_number", "")),
        number_format=carrier.get("number_format", "e164"),
        answer_timeout=float(v["speaqr_ari_call_answer_timeout"] or 30),
        allowed_prefixes=[str(p) for p in v["speaqr_ari_policy_allowed_prefixes"] or []],
        blocked_prefixes=[str(p) for p in v["speaqr_ari_policy_blocked_prefixes"] or []],
        max_calls_per_user=int(v["speaqr_ari_policy_max_calls_per_user"] or 0),
        max_calls_total=int(v["speaqr_ari_policy_max_calls_total"] or 0),
        user_processors={
            u["username"]: u.get("processor", "default") for u in v["speaqr_users"] or [] if "username" in u
        },
        default_processor=v["speaqr_ari_processor"] or "passthrough",
        fake_speaqr_shift_hz=float(v["speaqr_ari_fake_speaqr_shift_hz"] or 300),
        fake_speaqr_enabled=bool(v["speaqr_ari_fake_speaqr_enabled"]),
        ari_port=int(v["speaqr_asterisk_http_port"] or 8088),
        trunk=dict(carrier),
        carriers=[c for c in v["speaqr_asterisk_carriers"] or [] if c.get("state", "present") == "present"],
        carrier_tls_port=int(v["speaqr_lab_carrier_tls_port"] or 0),
        lab_ca_dir=str(v["speaqr_tls_lab_ca_dir"] or ""),
    )


# --- the stand-in carrier --------------------------------------------------------------------


def carrier_netns() -> str:
    """The network namespace the stand-in carrier runs in ("" for this host's own)."""
    return os.environ.get("SPEAQR_CARRIER_NETNS") or os.environ.get("SPEAQR_TARGET_NETNS", "")


def appliance_address_for_carrier(sip_target) -> str:
    """Where the carrier reaches the appliance: its public address from a host of its own."""
    return sip_target.public_address if os.environ.get("SPEAQR_CARRIER_NETNS") else sip_target.address


def issue_carrier_certificate(
    target: Target, ca_dir: str, address: str, workdir: Path, days: int = 2
) -> tuple[Path, Path]:
    """A key made here and a certificate for ``address`` (IP subjectAltName) issued by the
    appliance's lab CA (speaqr_tls), which the lab inventory lists in
    speaqr_asterisk_carrier_ca_certificates. Only the CSR travels to the appliance."""
    workdir.mkdir(parents=True, exist_ok=True)
    key, csr, cert = workdir / "carrier.key", workdir / "carrier.csr", workdir / "carrier.crt"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(csr), "-subj", f"/CN={address}"],
        check=True,
        capture_output=True,
    )
    script = (
        "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
        f'printf %s {shlex.quote(base64.b64encode(csr.read_bytes()).decode())} | base64 -d > "$d/csr"; '
        f"printf 'subjectAltName=IP:%s\\nextendedKeyUsage=serverAuth\\n' {shlex.quote(address)} > \"$d/ext\"; "
        f'openssl x509 -req -in "$d/csr" -CA {ca_dir}/lab-ca.crt -CAkey {ca_dir}/lab-ca.key '
        f'-days {int(days)} -extfile "$d/ext" -set_serial 0x$(openssl rand -hex 16)'
    )
    cert.write_text(target.check_output(f"bash -c {shlex.quote(script)}"))
    return cert, key


class CarrierProcess:
    """``python -m tests.carrier`` in the target's namespace; started and stopped by this object only.

    With ``tls_files`` (certificate, key) it also listens for TLS on the settings' TLS port and
    takes SRTP or plain RTP as each INVITE offers. When the dialled trunk registers (``auth:
    registration``), the carrier's edge (:mod:`tests.sip.carrier_edge`, Kamailio) runs in front
    of it on the trunk's transport and port instead, as a carrier's registrar and authenticating
    proxy, with ``tls_files`` as its certificate; the stand-in then takes the edge's UDP."""

    def __init__(
        self,
        settings: CallSettings,
        workdir: Path,
        netns: str = "",
        rules: dict[str, str] | None = None,
        tls_files: tuple[Path, Path] | None = None,
    ):
        self.settings = settings
        self.tls_files = tls_files
        self.workdir = workdir
        self.netns = netns
        self.rules = dict(CARRIER_RULES if rules is None else rules)
        self.state_file = workdir / "carrier-state.json"
        self.record_dir = workdir / "carrier-recordings"
        self.log_file = workdir / "carrier.log"
        self.proc: subprocess.Popen | None = None
        self.edge: CarrierEdge | None = None
        if registers(settings.trunk):
            standin = f"{settings.carrier_host}:{settings.carrier_port}"
            self.edge = CarrierEdge(
                settings.trunk, settings.carrier_host, standin, workdir / "edge", netns, tls_files=tls_files
            )

    def argv(self) -> list[str]:
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += [sys.executable, "-m", "tests.carrier"]
        cmd += ["--listen", f"{self.settings.carrier_host}:{self.settings.carrier_port}", "--transport", "udp"]
        if self.edge is not None:
            cmd += ["--srtp", "optional"]  # SDES as the trunk offers it, through the edge
        elif self.tls_files:
            cert, key = self.tls_files
            cmd += ["--tls-listen", f"{self.settings.carrier_host}:{self.settings.carrier_tls_port}"]
            cmd += ["--tls-cert", str(cert), "--tls-key", str(key), "--srtp", "optional"]
        cmd += ["--record-dir", str(self.record_dir), "--state", str(self.state_file), "--tone-hz", "600"]
        for suffix, mode in self.rules.items():
            cmd += ["--rule", f"{suffix}={mode}"]
        return cmd + ["--log-level", os.environ.get("SPEAQR_CARRIER_LOG_LEVEL", "3")]

    def start(self, timeout: float = 20.0) -> CarrierProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_file.unlink(missing_ok=True)
        with self.log_file.open("w") as log:
            self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("ready"):
                if self.edge is not None:
                    try:
                        self.edge.start()
                    except RuntimeError:
                        self.stop()
                        raise
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the stand-in carrier did not start: {' '.join(map(shlex.quote, self.argv()))}\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.edge is not None:
            self.edge.stop()
        stop_child(self.proc, timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def calls(self) -> list[dict]:
        return self.state().get("calls", [])

    def mark(self) -> int:
        """The number of INVITEs so far: pass it to ``calls_since`` to see only later ones."""
        return len(self.calls())

    def calls_since(self, mark: int) -> list[dict]:
        return self.calls()[mark:]

    def wait(self, predicate: Callable[[list[dict]], bool], timeout: float = 10.0, mark: int = 0) -> list[dict]:
        deadline = time.monotonic() + timeout
        calls = self.calls_since(mark)
        while not predicate(calls):
            if time.monotonic() >= deadline:
                raise AssertionError(f"carrier state never matched within {timeout} s: {json.dumps(calls)[:3000]}")
            time.sleep(0.05)
            calls = self.calls_since(mark)
        return calls

    def arrival_transport(self, call: dict) -> str | None:
        """The transport the appliance's INVITE for ``call`` came over to the carrier: to its
        edge where it has one (the stand-in then got it from the edge), else to the stand-in."""
        if self.edge is None:
            return call.get("via_transport")
        accepted = self.edge.invite_for(call["number"])
        return accepted.fields.get("proto") if accepted else None

    def call_for(self, call_number: str, mark: int, ended: bool = True, timeout: float = 10.0) -> dict:
        """The carrier's record of the (first) INVITE for ``call_number`` since ``mark``."""

        def found(calls):
            return any(c["number"] == call_number and (c["ended"] or not ended) for c in calls)

        calls = self.wait(found, timeout, mark)
        return next(c for c in calls if c["number"] == call_number)


# --- the target: call records, ARI, processor sessions -------------------------------------------

_CALL_RECORD_COLUMNS = (
    "id",
    "channel_id",
    "call_id",
    "username",
    "service",
    "destination",
    "dialled_number",
    "started_at",
    "answered_at",
    "ended_at",
    "sip_status",
    "cause",
    "processor",
    "processor_parts",
)

# Runs on the target as root: ARI GETs with the application's own credentials (read from its
# configuration, so no password crosses the command line), printed as one JSON object.
_ARI_PROBE = r"""
import base64, json, sys, tomllib, urllib.request
cfg = tomllib.load(open("/etc/speaqr-sip/ari.toml", "rb"))["ari"]
auth = base64.b64encode(f"{cfg['username']}:{cfg['password']}".encode()).decode()
out = {}
for path in sys.argv[1:]:
    req = urllib.request.Request(cfg["url"].rstrip("/") + "/ari/" + path, headers={"Authorization": "Basic " + auth})
    with urllib.request.urlopen(req, timeout=5) as r:
        out[path] = json.load(r)
print(json.dumps(out))
"""


class Target:
    """Probes of the appliance through testinfra's ``host`` (as root)."""

    def __init__(self, host):
        self.host = host

    def _run(self, cmd: str):
        if self.host.user().name == "root":
            return self.host.run(cmd)
        with self.host.sudo():
            return self.host.run(cmd)

    def check_output(self, cmd: str) -> str:
        r = self._run(cmd)
        assert r.rc == 0, f"{cmd!r} failed ({r.rc}): {r.stderr}"
        return r.stdout

    def sql(self, query: str) -> list[dict]:
        """A read-only query on the appliance's database as root over the socket (tab-separated out)."""
        out = self.check_output(f"mariadb --batch --raw speaqr -e {shlex.quote(query)}")
        lines = out.splitlines()
        if not lines:
            return []
        head = lines[0].split("\t")
        rows = []
        for line in lines[1:]:
            values = [None if v == "NULL" else v for v in line.split("\t")]
            rows.append(dict(zip(head, values, strict=True)))
        return rows

    def call_records(self, call_ids: list[str]) -> list[dict]:
        ids = [c for c in call_ids if c]
        if not ids:
            return []
        quoted = ",".join("'" + c.replace("\\", "\\\\").replace("'", "''") + "'" for c in ids)
        return self.sql(
            f"SELECT {', '.join(_CALL_RECORD_COLUMNS)} FROM call_records WHERE call_id IN ({quoted}) ORDER BY id"
        )

    def wait_call_records(self, call_ids: list[str], timeout: float = 15.0) -> dict[str, list[dict]]:
        """Rows by call id, once every call id has at least one (the writer is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.call_records(call_ids)
            by_id: dict[str, list[dict]] = {}
            for row in rows:
                by_id.setdefault(row["call_id"], []).append(row)
            missing = [c for c in call_ids if c not in by_id]
            if not missing or time.monotonic() >= deadline:
                return by_id
            time.sleep(0.5)

    def ari(self, *paths: str) -> dict:
        out = self.check_output("python3 -c " + shlex.quote(_ARI_PROBE) + " " + " ".join(map(shlex.quote, paths)))
        return json.loads(out)

    def main_pid(self, unit: str) -> str:
        """systemd's MainPID of ``unit`` ("0" when it is not running)."""
        return self.check_output(f"systemctl show --property MainPID --value {shlex.quote(unit)}").strip()

    def leftovers(self) -> dict:
        """What a finished call must not leave: ARI channels and bridges, the application's media
        relays (its UDP sockets) and processor sessions (its connections to Speaqr)."""
        ari = self.ari("channels", "bridges")
        pid = self.main_pid(ARI_SERVICE)
        relays = self.check_output(f"ss -H -u -a -n -p | grep -c 'pid={pid},' || true").strip() if pid != "0" else "?"
        speaqr = self.check_output(
            f"ss -H -t -n -p state established | grep 'pid={pid},' | grep -vc ':8088 ' || true"
        ).strip()
        return {
            "channels": [c.get("name") for c in ari["channels"]],
            "bridges": [b.get("id") for b in ari["bridges"]],
            "relay_sockets": int(relays) if relays.isdigit() else relays,
            "processor_connections": int(speaqr) if speaqr.isdigit() else speaqr,
        }

    def wait_clean(self, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            clean = not left["channels"] and not left["bridges"] and not left["relay_sockets"]
            clean = clean and not left["processor_connections"]
            if clean or time.monotonic() >= deadline:
                return left
            time.sleep(0.5)

    def trunk_state(self, trunk: str) -> str:
        """Asterisk's state of the carrier endpoint: online/offline (qualified), else unknown."""
        return str(self.ari(f"endpoints/PJSIP/{trunk}")[f"endpoints/PJSIP/{trunk}"].get("state", ""))

    def settle_trunk(self, trunk: str, timeout: float = 30.0) -> float:
        """After the stand-in carrier started: qualify the trunk now and wait until it has been
        online for longer than an OPTIONS may stay unanswered (qualify_timeout, 3 s), so no
        OPTIONS sent before the carrier was up can still mark it offline. Returns the seconds."""
        t0 = time.monotonic()
        self.check_output(f"asterisk -rx {shlex.quote(f'pjsip qualify {trunk}')}")
        online_since = None
        while True:
            now = time.monotonic()
            if self.trunk_state(trunk) == "online":
                online_since = online_since or now
                if now - online_since >= QUALIFY_TIMEOUT_S + 1.0:
                    return now - t0
            else:
                online_since = None
            if now - t0 >= timeout:
                raise AssertionError(f"trunk {trunk} not steadily online within {timeout} s of the carrier's start")
            time.sleep(0.2)

    def wait_trunk(self, trunk: str, state: str, timeout: float = 20.0) -> float:
        """Seconds until the trunk's state is ``state``; fails after ``timeout``."""
        t0 = time.monotonic()
        while (seen := self.trunk_state(trunk)) != state:
            if time.monotonic() - t0 >= timeout:
                raise AssertionError(f"trunk {trunk} still {seen!r} after {timeout} s (waiting for {state!r})")
            time.sleep(0.2)
        return time.monotonic() - t0

    def registration_state(self, name: str) -> str:
        """Asterisk's state of the outbound registration ``name`` (Registered, Rejected, ...)."""
        out = self.check_output("asterisk -rx 'pjsip show registrations'")
        m = re.search(rf"^\s*{re.escape(name)}/\S+\s+\S+\s+(\w+)", out, re.MULTILINE)
        return m.group(1) if m else ""

    def register_now(self, name: str, state: str, timeout: float = 45.0, resend_s: float = 5.0) -> float:
        """Make Asterisk send the registration ``name`` now, again every ``resend_s`` (an attempt
        may go out on a connection to a registrar that just went away); seconds until it shows
        ``state``."""
        t0 = time.monotonic()
        sent = -resend_s
        while (seen := self.registration_state(name)) != state:
            now = time.monotonic() - t0
            if now >= timeout:
                raise AssertionError(f"registration {name} still {seen!r} after {timeout} s (waiting for {state!r})")
            if now - sent >= resend_s:
                self.check_output(f"asterisk -rx {shlex.quote(f'pjsip send register {name}')}")
                sent = now
            time.sleep(0.2)
        return time.monotonic() - t0

    def watch_trunk(self, trunk: str, seconds: float) -> set[str]:
        """Every state the trunk showed over ``seconds`` (polled)."""
        seen = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.add(self.trunk_state(trunk))
            time.sleep(0.2)
        return seen

    def journal_since(self, unit: str, since_unix: float) -> str:
        return self.check_output(
            f"journalctl --no-pager -o short-precise -u {shlex.quote(unit)} --since @{since_unix:.0f} || true"
        )
