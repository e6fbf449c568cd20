"""The stand-in carrier's edge: Kamailio (tests/carrier/edge.cfg) on the carrier's host, the
registrar and authenticating proxy of a trunk with ``auth: registration``. It takes the
appliance's REGISTER and INVITEs with the trunk's credentials, on the trunk's own transport and
port (TLS with a certificate the appliance verifies, or UDP), and relays the calls over UDP to
the stand-in carrier (tests/carrier), which records and answers them as for any trunk.

Started and stopped by this object only (its own child process); what it accepted and refused
is read back from its log (one ``edge:`` line each).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "carrier" / "edge.cfg"
REALM = "carrier.lab"
# The edge's own UDP socket towards the stand-in (and the whole edge, for a UDP trunk).
RELAY_PORT = 5072
_EVENT = re.compile(r"edge: (?:<script>: )?(accepted|refused) (REGISTER|INVITE) (.*)$")
_FIELD = re.compile(r"(\w+)=(\S*)")


@dataclass(frozen=True)
class EdgeEvent:
    what: str  # "accepted REGISTER", "refused INVITE", ...
    fields: dict[str, str]


def registers(trunk: dict) -> bool:
    """Whether a speaqr_asterisk_carriers item wants outbound registration (and so an edge)."""
    return trunk.get("auth") == "registration"


def registration_trunk(carriers: list[dict]) -> dict | None:
    """The first present carrier that registers (``auth: registration``), if any."""
    return next((c for c in carriers if registers(c)), None)


def stop_child(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM one of our own child processes, SIGKILL if it outlives ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CarrierEdge:
    def __init__(
        self,
        trunk: dict,
        host: str,
        standin: str,
        workdir: Path,
        netns: str = "",
        password: str | None = None,
        tls_files: tuple[Path, Path] | None = None,
    ):
        self.trunk = trunk
        self.transport = trunk.get("transport", "tls")
        if self.transport == "tls" and tls_files is None:
            raise ValueError(f"a TLS trunk's edge needs a certificate and key ({trunk.get('name')})")
        self.tls_files = tls_files if self.transport == "tls" else None
        self.listen = f"{self.transport}:{host}:{int(trunk['port'])}"
        self.relay = f"udp:{host}:{RELAY_PORT}"
        self.standin = standin
        self.workdir = workdir
        self.netns = netns
        # The credentials it accepts: the trunk's own unless a test wants them wrong.
        self.password = str(trunk.get("password", "")) if password is None else password
        self.log_file = workdir / "edge.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-l", self.listen, "-Y", str(self.workdir)]
        if self.relay != self.listen:
            cmd += ["-l", self.relay]
        defines = {
            "STANDIN": f"sip:{self.standin}",
            "REALM": REALM,
            "TRUNK_USER": str(self.trunk.get("username", "")),
            "TRUNK_PASSWORD": self.password,
        }
        if self.tls_files:
            cert, key = self.tls_files
            cmd += ["-A", "WITH_TLS"]
            defines |= {"TLS_CERTIFICATE": str(cert), "TLS_PRIVATE_KEY": str(key)}
        for name, value in defines.items():
            cmd += ["-A", f'{name}="{value}"']
        return cmd

    def start(self, timeout: float = 10.0) -> CarrierEdge:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("w") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._listening():
                return self
            time.sleep(0.1)
        tail = self._log()[-3000:]
        self.stop()
        raise RuntimeError(f"the carrier's edge (Kamailio) did not start: {' '.join(self.argv())}\n{tail}")

    def _listening(self) -> bool:
        proto, _, host_port = self.listen.partition(":")
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += ["ss", "-Hltn" if proto == "tls" else "-Hlun", f"sport = :{host_port.rsplit(':', 1)[1]}"]
        return host_port in subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.proc, timeout)

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def events(self) -> list[EdgeEvent]:
        out = []
        for line in self._log().splitlines():
            m = _EVENT.search(line)
            if m:
                verdict, method, rest = m.groups()
                out.append(EdgeEvent(f"{verdict} {method}", dict(_FIELD.findall(rest))))
        return out

    def invite_for(self, number: str) -> EdgeEvent | None:
        """The last INVITE for ``number`` the edge accepted (and relayed), if any."""
        found = [e for e in self.events() if e.what == "accepted INVITE" and e.fields.get("number") == number]
        return found[-1] if found else None

    def wait_event(self, what: str, timeout: float = 15.0) -> EdgeEvent:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e.what == what]
            if found:
                return found[-1]
            if time.monotonic() >= deadline:
                raise AssertionError(f"the edge logged no {what!r} within {timeout:.0f} s:\n{self._log()[-2000:]}")
            time.sleep(0.2)
