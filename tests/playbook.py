"""Run one of the project's playbooks from a test, as an operator runs it: the lab vault opened
with its committed password, plain output (the YAML callback still folds long messages)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB_PASSWORD = ROOT / "inventory" / "example" / "lab-vault-password"


def tool(name: str) -> str:
    """An Ansible command of the running venv (skip the test where Ansible is not installed)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed")
    return found


def run_playbook(
    inventory: str | Path, playbook: str, *args: str, project_config: bool = False, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i inventory playbooks/<playbook> args``; ``project_config`` reads the
    project's ansible.cfg (otherwise the caller's environment, e.g. molecule's, decides)."""
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(LAB_PASSWORD), ANSIBLE_NOCOLOR="1")
    if project_config:
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    cmd = [tool("ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / playbook), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def said(run: subprocess.CompletedProcess[str]) -> str:
    """Everything the run printed, failures included (a callback may print them on stderr),
    without colours and with the YAML callback's line folding undone."""
    return " ".join(ANSI_ESCAPE.sub("", run.stdout + "\n" + run.stderr).split())


def lab_vault() -> dict:
    """The example inventory's vault, opened with the lab password."""
    import yaml

    vault = ROOT / "inventory" / "example" / "group_vars" / "all" / "vault.yml"
    shown = subprocess.run(
        [tool("ansible-vault"), "view", "--vault-password-file", str(LAB_PASSWORD), str(vault)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(shown)


def run_role_cases(playbook: Path, extra: dict, workdir: Path, timeout: float = 600) -> tuple[dict, str]:
    """Run a tests/unit/ansible case playbook on the controller (the roles' checks, no target)
    with ``extra`` plus ``out``; returns the per-case results it wrote and everything it printed."""
    out = workdir / "results.json"
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
    settings = {**extra, "out": str(out), "ansible_python_interpreter": sys.executable}
    cmd = [tool("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(settings)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert out.exists(), p.stdout[-4000:] + p.stderr[-2000:]
    return json.loads(out.read_text()), p.stdout + p.stderr
