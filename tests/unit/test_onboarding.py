"""playbooks/onboarding.yml on the example inventory (on the controller, no target): one sheet and
one pjsua configuration per present, enabled user, carrying the inventory's settings; no
password in any file unless asked for, and then only in the pjsua files, readable by the owner
alone; an unknown user is refused naming the variable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
LAB_PASSWORD = EXAMPLE / "lab-vault-password"
HOST = "speaqr-lab"


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed")
    return found


def onboard(out: Path, **extra) -> subprocess.CompletedProcess:
    settings = {"speaqr_onboarding_dir": str(out), **extra}
    cmd = [tool("ansible-playbook"), "-i", str(EXAMPLE), str(ROOT / "playbooks" / "onboarding.yml")]
    cmd += ["-e", json.dumps(settings), "--vault-password-file", str(LAB_PASSWORD)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    vault = subprocess.run(
        [
            tool("ansible-vault"),
            "view",
            "--vault-password-file",
            str(LAB_PASSWORD),
            str(EXAMPLE / "group_vars/all/vault.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(vault)["vault_speaqr_user_passwords"]


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
    said = " ".join(p.stdout.split())  # the YAML callback folds long messages
    assert "speaqr_onboarding_usernames: carol, mallory is not a present, enabled user of speaqr_users" in said
    assert not (tmp_path / HOST).exists()
