"""A TLS configuration scan of the SIP port with sslyze (from a client host of its own when the
lab topology exists): no SSL 2/3, TLS 1.0 or 1.1; TLS 1.2 only with forward-secret AEAD suites;
TLS 1.3 accepted; no client-initiated renegotiation. The scan's summary is written to
.lab/tls-scan.json."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.sip.harness import ROOT

# sslyze pins an older cryptography than ansible-core's venv: it has a venv of its own.
SSLYZE_PYTHON = ROOT / ".venv-sslyze" / "bin" / "python"
FORWARD_SECRET_AEAD = re.compile(
    r"^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$"
)


@pytest.fixture(scope="module")
def scan(sip_target, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tls-scan") / "scan.json"
    prefix = []
    if sip_target.netns:
        # From a host of the public segment, as a scanner on the internet sees the appliance.
        sip_target = sip_target.from_lab_host(sip_target.lab_host("client2"))
        prefix = ["ip", "netns", "exec", sip_target.netns]
    target = f"{sip_target.domain}:{sip_target.port}{{{sip_target.address}}}"
    if not SSLYZE_PYTHON.exists():
        pytest.fail(f"{SSLYZE_PYTHON} missing: scripts/host-setup.sh installs sslyze (requirements-sslyze.txt)")
    cmd = [
        *prefix,
        str(SSLYZE_PYTHON),
        "-m",
        "sslyze",
        "--sslv2",
        "--sslv3",
        "--tlsv1",
        "--tlsv1_1",
        "--tlsv1_2",
        "--tlsv1_3",
        "--reneg",
        f"--json_out={out}",
        target,
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.exists(), f"sslyze wrote no result (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    result = json.loads(out.read_text())["server_scan_results"][0]
    assert result["scan_status"] == "COMPLETED", result.get("connectivity_error_trace") or result
    commands = result["scan_result"]
    summary = {
        name: sorted(s["cipher_suite"]["name"] for s in commands[name]["result"]["accepted_cipher_suites"])
        for name in (
            "ssl_2_0_cipher_suites",
            "ssl_3_0_cipher_suites",
            "tls_1_0_cipher_suites",
            "tls_1_1_cipher_suites",
            "tls_1_2_cipher_suites",
            "tls_1_3_cipher_suites",
        )
    }
    summary["session_renegotiation"] = commands["session_renegotiation"]["result"]
    (ROOT / ".lab").mkdir(exist_ok=True)
    (ROOT / ".lab" / "tls-scan.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


@pytest.mark.parametrize(
    "protocol", ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]
)
def test_protocols_older_than_tls_1_2_are_refused(scan, protocol):
    assert scan[protocol] == [], f"{protocol}: {scan[protocol]}"


def test_tls_1_2_accepts_only_forward_secret_aead_suites(scan):
    accepted = scan["tls_1_2_cipher_suites"]
    assert accepted, "TLS 1.2 accepts no suite: the TLS 1.2 clients (pjsua2) could not connect"
    assert [s for s in accepted if not FORWARD_SECRET_AEAD.match(s)] == []


def test_tls_1_3_is_accepted(scan):
    assert scan["tls_1_3_cipher_suites"], "TLS 1.3 refused"


def test_client_initiated_renegotiation_is_refused(scan):
    reneg = scan["session_renegotiation"]
    assert reneg["is_vulnerable_to_client_renegotiation_dos"] is False, reneg
