"""playbooks/onboarding.yml on the example inventory (on the controller, no target): one sheet and
one pjsua configuration per present, enabled user, carrying the inventory's settings; no
password in any file unless asked for, and then only in the pjsua files, readable by the owner
alone; an unknown user is refused naming the variable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.playbook import ROOT, lab_vault, run_playbook, said

EXAMPLE = ROOT / "inventory" / "example"
HOST = "speaqr-lab"


def onboard(out: Path, **extra) -> subprocess.CompletedProcess:
    settings = {"speaqr_onboarding_dir": str(out), **extra}
    return run_playbook(EXAMPLE, "onboarding.yml", "-e", json.dumps(settings), project_config=True, timeout=300)


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return lab_vault()["vault_speaqr_user_passwords"]


@pytest.fixture(scope="module")
def sheets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onboarding")
    p = onboard(out)
    assert p.returncode == 0, p.stdout[-3000:]
    return out / HOST


def test_each_present_enabled_user_gets_a_sheet_and_a_pjsua_file(sheets):
    # carol is disabled in the example inventory: the services refuse her calls.
    assert sorted(f.name for f in sheets.iterdir()) == ["alice.md", "alice.pjsua.cfg", "bob.md", "bob.pjsua.cfg"]


def test_the_sheet_carries_what_the_service_description_asks_the_customer_to_set(sheets):
    sheet = (sheets / "alice.md").read_text()
    for expected in (
        "`sip.speaqr.lab`",
        "`5061`",
        "**TLS** only",
        "**SRTP with SDES**",
        "**PCMU (G.711 µ-law) only**",
        "**REGISTER before calling**",
        "**STUN**",
        "`X-Origin` | your username, `alice`",
        "`X-Destination`",
        "sip:loopback@sip.speaqr.lab",
        "sip:call@sip.speaqr.lab",
        "alice@speaqr.lab",
    ):
        assert expected in sheet, expected


def test_the_pjsua_file_registers_over_tls_with_srtp_and_pcmu_only(sheets):
    options = [line for line in (sheets / "bob.pjsua.cfg").read_text().splitlines() if line.startswith("--")]
    assert "--id sip:bob@sip.speaqr.lab" in options
    assert "--registrar sip:sip.speaqr.lab:5061;transport=tls" in options
    assert {"--use-tls", "--tls-verify-server", "--use-srtp 2", "--srtp-secure 1", "--add-codec PCMU"} <= set(options)
    assert not [o for o in options if o.startswith("--password")]
    assert options.index("--add-codec PCMU") > max(i for i, o in enumerate(options) if o.startswith("--dis-codec"))


def test_no_password_is_written_unless_asked_for(sheets, passwords):
    for f in sheets.iterdir():
        text = f.read_text()
        leaked = [user for user, password in passwords.items() if password in text]
        assert not leaked, f"{f.name} holds the password of {leaked}"


def test_passwords_asked_for_go_only_into_the_pjsua_files_readable_by_the_owner(tmp_path, passwords):
    p = onboard(tmp_path, speaqr_onboarding_include_passwords=True, speaqr_onboarding_usernames=["alice"])
    assert p.returncode == 0, p.stdout[-3000:]
    assert passwords["alice"] not in p.stdout + p.stderr
    host = tmp_path / HOST
    assert sorted(f.name for f in host.iterdir()) == ["alice.md", "alice.pjsua.cfg"]
    cfg = host / "alice.pjsua.cfg"
    assert f"--password {passwords['alice']}" in cfg.read_text().splitlines()
    assert cfg.stat().st_mode & 0o777 == 0o600
    assert passwords["alice"] not in (host / "alice.md").read_text()


def test_an_unknown_or_disabled_user_is_refused_naming_the_variable(tmp_path):
    p = onboard(tmp_path, speaqr_onboarding_usernames=["alice", "carol", "mallory"])
    assert p.returncode != 0
    assert "speaqr_onboarding_usernames: carol, mallory is not a present, enabled user of speaqr_users" in said(p)
    assert not (tmp_path / HOST).exists()
