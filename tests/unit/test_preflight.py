"""speaqr_preflight keeps lab and production apart: a production inventory that switches on a
lab helper is refused naming it, and so is one whose vault opens with the committed lab
password; the production sample and the example (lab) inventory pass. Runs ansible-playbook on
the controller (tests/unit/ansible/preflight.yml), no target needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "preflight.yml"
SAMPLE = ROOT / "inventory" / "production-sample"
EXAMPLE = ROOT / "inventory" / "example"
LAB_PASSWORD = EXAMPLE / "lab-vault-password"


def run_preflight(
    inventory: Path, *extra_vars: dict, vault_password: Path | None = None
) -> subprocess.CompletedProcess:
    playbook = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
    if not Path(playbook).exists():
        pytest.skip("ansible-playbook is not installed")
    cmd = [playbook, "-i", str(inventory), str(PLAYBOOK)]
    settings = {
        "ansible_python_interpreter": sys.executable,
        "speaqr_preflight_lab_vault_password_file": str(LAB_PASSWORD),
    }
    for extra in (settings, *extra_vars):
        cmd += ["-e", json.dumps(extra)]
    if vault_password is not None:
        cmd += ["--vault-password-file", str(vault_password)]
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    )
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_production_sample_passes():
    p = run_preflight(SAMPLE)
    assert p.returncode == 0, p.stdout[-3000:]


def test_the_example_lab_inventory_passes_with_its_helpers_on():
    p = run_preflight(EXAMPLE, vault_password=LAB_PASSWORD)
    assert p.returncode == 0, p.stdout[-3000:]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"speaqr_ari_fake_speaqr_enabled": True}, "speaqr_ari_fake_speaqr_enabled"),
        ({"speaqr_asterisk_echo_extension_enabled": True}, "speaqr_asterisk_echo_extension_enabled"),
        ({"speaqr_asterisk_agi_variants_enabled": True}, "speaqr_asterisk_agi_variants_enabled"),
        ({"speaqr_base_apt_ignore_valid_until": True}, "speaqr_base_apt_ignore_valid_until"),
        ({"speaqr_tls_mode": "lab"}, "speaqr_tls_mode"),
        (
            {"speaqr_asterisk_carriers": [{"name": "c1", "transport": "udp", "allow_insecure_transport": True}]},
            "speaqr_asterisk_carriers[].allow_insecure_transport",
        ),
    ],
)
def test_a_lab_helper_in_a_production_inventory_is_refused_by_name(setting, named):
    p = run_preflight(SAMPLE, setting)
    assert p.returncode != 0, p.stdout[-3000:]
    assert named in p.stdout and "lab-only" in p.stdout, p.stdout[-3000:]


def test_an_unknown_environment_is_refused():
    p = run_preflight(SAMPLE, {"speaqr_environment": "staging"})
    assert p.returncode != 0 and "speaqr_environment must be one of: production, lab" in p.stdout, p.stdout[-3000:]


def test_a_copied_lab_vault_is_refused_outside_the_lab(tmp_path):
    inventory = tmp_path / "prod"
    shutil.copytree(SAMPLE, inventory)
    shutil.copy(EXAMPLE / "group_vars" / "all" / "vault.yml", inventory / "group_vars" / "all" / "vault.yml")
    p = run_preflight(inventory, vault_password=LAB_PASSWORD)
    assert p.returncode != 0, p.stdout[-3000:]
    assert "group_vars/all/vault.yml opens with the committed lab vault password" in p.stdout, p.stdout[-3000:]


def test_a_vault_of_its_own_is_accepted(tmp_path):
    inventory = tmp_path / "prod"
    shutil.copytree(SAMPLE, inventory)
    password = tmp_path / "own-password"
    password.write_text("an-operator-chosen-vault-password\n")
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text("vault_speaqr_api_key: operator-secret\n")
    ansible_vault = shutil.which("ansible-vault") or str(Path(sys.executable).parent / "ansible-vault")
    subprocess.run(
        [ansible_vault, "encrypt", "--vault-password-file", str(password), str(vault)], check=True, capture_output=True
    )
    p = run_preflight(inventory, vault_password=password)
    assert p.returncode == 0, p.stdout[-3000:]


def test_the_operators_own_vault_password_setting_does_not_make_their_vault_look_like_the_labs(tmp_path):
    inventory = tmp_path / "prod"
    shutil.copytree(SAMPLE, inventory)
    password = tmp_path / "own-password"
    password.write_text("an-operator-chosen-vault-password\n")
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text("vault_speaqr_api_key: operator-secret\n")
    ansible_vault = shutil.which("ansible-vault") or str(Path(sys.executable).parent / "ansible-vault")
    subprocess.run(
        [ansible_vault, "encrypt", "--vault-password-file", str(password), str(vault)], check=True, capture_output=True
    )
    os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
    try:
        p = run_preflight(inventory)
    finally:
        del os.environ["ANSIBLE_VAULT_PASSWORD_FILE"]
    assert p.returncode == 0, p.stdout[-3000:]
