"""The templates behind the fault handling: Asterisk's absolute timeout before Stasis and the
application's trunk check follow the roles' variables. Renders with ansible-playbook on the
controller (tests/unit/ansible/render_templates.yml)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "render_templates.yml"


def render(tmp_path: Path, **extra: object) -> tuple[str, dict]:
    playbook = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
    if not Path(playbook).exists():
        pytest.skip("ansible-playbook is not installed")
    values = {"out": str(tmp_path), "ansible_python_interpreter": sys.executable, **extra}
    p = subprocess.run(
        [playbook, "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(values)],
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    ari = tomllib.loads((tmp_path / "ari.toml").read_text())
    return (tmp_path / "extensions.conf").read_text(), ari


def stasis_extensions(dialplan: str) -> dict[str, list[str]]:
    """Per service context, the lines of its `stasis` extension."""
    out: dict[str, list[str]] = {}
    for service in ("loopback", "call"):
        block = dialplan.split(f"[speaqr-service-{service}]")[1].split("\n[")[0]
        lines = block.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("exten => stasis,1,"))
        out[service] = [lines[start]] + [ln for ln in lines[start + 1 :] if ln.startswith(" same")][:2]
    return out


def test_absolute_timeout_is_set_before_stasis_from_duration_and_answer_timeout(tmp_path):
    dialplan, ari = render(
        tmp_path,
        speaqr_ari_policy_max_call_duration=600,
        speaqr_ari_loopback_max_call_duration=300,
        speaqr_ari_call_answer_timeout=20,
    )
    for service, lines in stasis_extensions(dialplan).items():
        assert lines[0] == "exten => stasis,1,Set(TIMEOUT(absolute)=740)", service
        assert lines[1] == f" same => n,Stasis(loopback,{service})", service
    assert ari["policy"]["max_call_duration"] == 600


def test_the_absolute_timeout_outlasts_the_longer_of_the_two_services(tmp_path):
    dialplan, _ari = render(
        tmp_path,
        speaqr_ari_policy_max_call_duration=600,
        speaqr_ari_loopback_max_call_duration=3600,
        speaqr_ari_call_answer_timeout=20,
    )
    for service, lines in stasis_extensions(dialplan).items():
        assert lines[0] == "exten => stasis,1,Set(TIMEOUT(absolute)=3740)", service


def test_absolute_timeout_zero_leaves_stasis_first(tmp_path):
    dialplan, _ari = render(tmp_path, speaqr_asterisk_stasis_absolute_timeout=0)
    assert not re.search(r"Set\(TIMEOUT", dialplan)
    for service, lines in stasis_extensions(dialplan).items():
        assert lines[0] == f"exten => stasis,1,Stasis(loopback,{service})"


def test_the_trunk_is_checked_when_its_carrier_is_qualified(tmp_path):
    _dialplan, ari = render(tmp_path, speaqr_asterisk_carrier_qualify_frequency=30)
    assert ari["call"]["trunk_qualified"] is True


@pytest.mark.parametrize(
    "extra",
    [
        {"speaqr_asterisk_carrier_qualify_frequency": 0},
        {"speaqr_ari_call_carrier": {"name": "c1", "qualify_frequency": 0}},
    ],
)
def test_a_carrier_without_qualify_is_assumed_reachable(tmp_path, extra):
    _dialplan, ari = render(tmp_path, **extra)
    assert ari["call"]["trunk_qualified"] is False
