"""The harness behind tests/sip: target description, client runner, held calls.

See conftest.py for where the target's address, domain, CA and users come from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TONE_HZ = 1000.0
CLIENT_TIMEOUT_S = 90
# Calls one client process holds at most (tests/sipclient --concurrent).
MAX_CALLS_PER_CLIENT = 4


class ClientError(RuntimeError):
    pass


@dataclass
class SipTarget:
    address: str
    domain: str
    ca: str
    users: dict[str, str]  # username -> password, in inventory order
    netns: str = ""
    port: int = 5061
    resolve: bool = True
    inventory_hostname: str | None = None
    extra: dict = field(default_factory=dict)
    # What hosts outside the appliance's local networks contact: its public address behind 1:1
    # NAT (speaqr_asterisk_external_signaling_address), else ``address``.
    public_address: str = ""

    @property
    def first_user(self) -> str:
        return next(iter(self.users))

    def from_lab_host(self, netns: str) -> SipTarget:
        """This target as a client in lab namespace ``netns`` (a host of the lab's public segment,
        scripts/target/common.sh) reaches it: through its public address."""
        return dataclasses.replace(self, netns=netns, address=self.public_address or self.address)

    def lab_host(self, kind: str) -> str:
        """The namespace of one of the lab's hosts around the target (``client1``, ``nat``,
        ``natclient``, ``stun``...); skips when the tests run without the lab topology."""
        if not self.netns:
            pytest.skip("no lab topology (SPEAQR_TARGET_NETNS): these tests need client hosts of their own")
        name = f"{self.netns}-{kind}"
        present = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
        if name not in present:
            pytest.fail(f"lab host namespace {name} missing: scripts/target/*-up.sh create it")
        return name


def _templated(host, var: str):
    """A variable as Ansible templates it for this host (vault values decrypted)."""
    res = host.ansible("debug", f"var={var}", check=False)
    value = res.get(var)
    if value is None or (isinstance(value, str) and value.startswith("VARIABLE IS NOT DEFINED")):
        return None
    return value


def _users_from_inventory(raw) -> dict[str, str]:
    users = {}
    for u in raw or []:
        if u.get("state", "present") == "absent" or not u.get("enabled", True):
            continue
        users[u["username"]] = u["password"]
    return users


SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _ca_file(host, inventory_hostname: str) -> str:
    """Lab mode: the lab CA the TLS role fetched (``playbooks/../.lab/<host>/lab-ca.crt``);
    provided mode (a public CA's certificate): the system's trust store, like any softphone."""
    if _templated(host, "speaqr_tls_mode") == "provided":
        return SYSTEM_CA_BUNDLE
    return str(ROOT / ".lab" / inventory_hostname / "lab-ca.crt")


def load_target(host) -> SipTarget:
    """The target of testinfra's ``host`` (its inventory), with environment overrides."""
    env = os.environ
    address = env.get("SPEAQR_SIP_ADDRESS")
    domain = env.get("SPEAQR_SIP_DOMAIN")
    ca = env.get("SPEAQR_LAB_CA")
    users = json.loads(env["SPEAQR_SIP_USERS"]) if env.get("SPEAQR_SIP_USERS") else None
    inv_name = None
    if not (address and domain and ca and users):
        if host.backend.NAME != "ansible":
            pytest.skip(
                "no SIP target: run under testinfra's ansible backend or set "
                "SPEAQR_SIP_ADDRESS, SPEAQR_SIP_DOMAIN, SPEAQR_LAB_CA and SPEAQR_SIP_USERS"
            )
        inv_name = getattr(host.backend, "host", None) or host.backend.get_hostname()
        address = address or _templated(host, "speaqr_sip_address") or _templated(host, "ansible_host")
        domain = domain or _templated(host, "speaqr_sip_domain") or _templated(host, "speaqr_asterisk_sip_domain")
        ca = ca or _ca_file(host, inv_name)
        users = users or _users_from_inventory(_templated(host, "speaqr_users"))
    if not (address and domain and users):
        pytest.fail(f"incomplete SIP target: address={address!r} domain={domain!r} users={list(users or [])}")
    if not Path(ca).is_file():
        pytest.fail(f"lab CA file {ca} not found (the TLS role fetches it to .lab/<host>/lab-ca.crt)")
    return SipTarget(
        address=address,
        domain=domain,
        ca=ca,
        users=dict(users),
        netns=env.get("SPEAQR_TARGET_NETNS", ""),
        resolve=env.get("SPEAQR_SIP_RESOLVE", "1") != "0",
        inventory_hostname=inv_name,
        public_address=env.get("SPEAQR_PUBLIC_ADDRESS")
        or (_templated(host, "speaqr_asterisk_external_signaling_address") if host.backend.NAME == "ansible" else "")
        or address,
    )


class SipClient:
    """Runs the pjsua2 client CLI (one process per call) and parses its JSON."""

    def __init__(self, target: SipTarget):
        self.t = target

    def argv(self, sub: str, user: str, *extra: str, ca: str | None = None, verify: bool = True) -> list[str]:
        t = self.t
        cmd = []
        if t.netns:
            cmd += ["ip", "netns", "exec", t.netns]
        cmd += [sys.executable, "-m", "tests.sipclient", sub, "--user", user, "--domain", t.domain, "--ca", ca or t.ca]
        if t.resolve and t.domain != t.address:
            cmd += ["--server", f"{t.domain}:{t.port}", "--resolve", f"{t.domain}={t.address}"]
        else:
            cmd += ["--server", f"{t.address}:{t.port}"]
        if not verify:
            cmd.append("--no-verify-server")
        return cmd + list(extra)

    def env(self, password: str) -> dict:
        env = dict(os.environ)
        env["SIPCLIENT_PASSWORD"] = password  # not on the command line (ps, logs)
        return env

    def _password(self, user: str, password: str | None) -> str:
        return password if password is not None else self.t.users[user]

    def run(
        self,
        sub: str,
        user: str,
        *extra: str,
        password: str | None = None,
        ca: str | None = None,
        timeout: float = CLIENT_TIMEOUT_S,
    ) -> dict:
        cmd = self.argv(sub, user, *extra, ca=ca)
        p = subprocess.run(
            cmd,
            cwd=ROOT,
            env=self.env(self._password(user, password)),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return _parse(p.stdout, p.stderr, p.returncode, cmd)

    def register(self, user: str, **kw) -> dict:
        return self.run("register", user, **kw)

    def call(self, user: str, to: str = "loopback", *extra: str, headers: dict | None = None, **kw) -> dict:
        args = ["--to", to]
        for name, value in (headers if headers is not None else self.default_headers(user)).items():
            args += ["--header", f"{name}: {value}"]
        return self.run("call", user, *args, *extra, **kw)

    def default_headers(self, user: str) -> dict:
        return {"X-Origin": user, "X-Destination": "test"}

    def hold(
        self,
        user: str,
        to: str = "loopback",
        *extra: str,
        workdir: Path,
        headers: dict | None = None,
        password: str | None = None,
    ) -> HeldCall:
        """Start a call that stays up until ``HeldCall.stop()``; returns once it is connected (or failed)."""
        ready = workdir / f"hold-{user}-{time.monotonic_ns()}.ready"
        args = ["--to", to, "--until-signal", "--ready-file", str(ready)]
        for name, value in (headers if headers is not None else self.default_headers(user)).items():
            args += ["--header", f"{name}: {value}"]
        cmd = self.argv("call", user, *args, *extra)
        out = workdir / f"{ready.stem}.out"
        err = workdir / f"{ready.stem}.err"
        with out.open("w") as fo, err.open("w") as fe:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env(self._password(user, password)), stdout=fo, stderr=fe, text=True
            )
        held = HeldCall(proc, ready, out, err, cmd)
        held.wait_ready()
        return held

    def hold_many(self, user: str, count: int, *extra: str, workdir: Path, **kw) -> list[HeldCall]:
        """``count`` calls of ``user`` held at once, in as many client processes as it takes
        (a client holds at most MAX_CALLS_PER_CLIENT); stop them with :func:`stop_all`."""
        to = kw.pop("to", "loopback")
        held: list[HeldCall] = []
        try:
            while count > 0:
                n = min(count, MAX_CALLS_PER_CLIENT)
                held.append(self.hold(user, to, "--concurrent", str(n), *extra, workdir=workdir, **kw))
                count -= n
        except BaseException:
            stop_all(held)
            raise
        return held


def calls_of(result: dict) -> list[dict]:
    """The per-call results of a client run, whether it made one call or several."""
    return result.get("calls", [result])


def stop_all(held: list[HeldCall]) -> list[dict]:
    """Signal every held client at once (their calls hang up together), then collect each result."""
    for h in held:
        h.signal()
    return [h.stop() for h in held]


class HeldCall:
    def __init__(self, proc: subprocess.Popen, ready: Path, out: Path, err: Path, cmd: list[str]):
        self.proc, self.ready, self.out, self.err, self.cmd = proc, ready, out, err, cmd
        self.state: dict | None = None
        self.signalled = False

    def wait_ready(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                self.state = json.loads(self.ready.read_text())
                return self.state
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        result = self.stop()
        raise ClientError(f"held call never became ready: {json.dumps(result)[:2000]}")

    def signal(self) -> None:
        """SIGTERM the client once (only this process we started): it hangs its calls up."""
        if self.proc.poll() is None and not self.signalled:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGTERM the client (only this process we started); it reports whether the call
        was still connected with RTP flowing at that moment, then hangs up."""
        self.signal()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return _parse(self.out.read_text(), self.err.read_text(), self.proc.returncode, self.cmd)


def _parse(stdout: str, stderr: str, rc: int, cmd: list[str]) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        tail = "\n".join(stderr.splitlines()[-30:])
        raise ClientError(f"sipclient rc={rc} gave no JSON ({exc}); cmd={' '.join(cmd)}\n{tail}") from exc
