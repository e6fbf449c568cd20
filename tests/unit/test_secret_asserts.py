"""Passwords that would break the rendered PJSIP files are refused with a message that names
the variable (speaqr_users[<i>].password, speaqr_asterisk_carriers[<i>].password) and never the
value, and no password reaches the output of ``ansible-playbook -vvv`` for those checks, passed or
failed. Runs the roles' checks on the controller (tests/unit/ansible/secret_cases.yml)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "unit" / "ansible" / "secret_cases.yml"

# Every password is unique and recognisable, so its absence from the output means something.
GOOD_CARRIER_PW = "CarrierOkSecret-4b7e1d"
GOOD_USER_PW = "UserOkSecret-9a2c5f0e"


def carrier(password: str) -> list[dict]:
    return [
        {"name": "tls1", "host": "sip.carrier.example", "auth": "registration", "username": "u1", "password": password}
    ]


def user(name: str, password: str) -> dict:
    return {
        "username": name,
        "password": password,
        "email": f"{name}@example.com",
        "source_language": "en-us",
        "target_language": "es-es",
    }


def users(bad_password: str) -> list[dict]:
    # The bad one is the second entry in the inventory but the first in username order, so a
    # message with [1] proves the index is the inventory's.
    return [user("zoe", GOOD_USER_PW), user("amy", bad_password)]


BAD = {
    "semicolon": ("Bad;Secret-c1f3a9", "contains ';'"),
    "hash": ("Bad#Secret-d2e4b8", "contains '#'"),
    "newline": ("Bad\nSecret-e5a7c6", "contains a line break"),
    "carriage-return": ("Bad\rSecret-f6b8d5", "contains a line break"),
    "control": ("Bad\x07Secret-a9c1e4", "contains a control character"),
    "quote": ('Bad"Secret-b1d3f2', "contains a double quote or a backslash"),
    "backslash": ("Bad\\Secret-c3e5a1", "contains a double quote or a backslash"),
    "leading-space": (" BadSecret-d4f6b2", "starts or ends with whitespace"),
}

CASES = [
    {
        "name": "carrier-ok",
        "role": "speaqr_asterisk",
        "tasks_from": "carriers.yml",
        "carriers": carrier(GOOD_CARRIER_PW),
    },
    {"name": "users-ok", "role": "speaqr_users", "tasks_from": "assert.yml", "users": users("UserOkSecret-1e3g5i7k")},
    *(
        {"name": f"carrier-{k}", "role": "speaqr_asterisk", "tasks_from": "carriers.yml", "carriers": carrier(pw)}
        for k, (pw, _) in BAD.items()
    ),
    *(
        {"name": f"users-{k}", "role": "speaqr_users", "tasks_from": "assert.yml", "users": users(pw)}
        for k, (pw, _) in BAD.items()
    ),
]

SECRETS = [GOOD_CARRIER_PW, GOOD_USER_PW, "UserOkSecret-1e3g5i7k", *(pw for pw, _ in BAD.values())]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    playbook = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
    if not Path(playbook).exists():
        pytest.skip("ansible-playbook is not installed")
    tmp = tmp_path_factory.mktemp("secret-asserts")
    out = tmp / "results.json"
    extra = tmp / "extra.json"
    # The cases go in a file: on the command line they would be in the -vvv output themselves.
    extra.write_text(json.dumps({"cases": CASES, "out": str(out), "ansible_python_interpreter": sys.executable}))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
    p = subprocess.run(
        [playbook, "-vvv", "-i", "localhost,", str(PLAYBOOK), "-e", f"@{extra}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.exists(), p.stdout[-4000:] + p.stderr[-2000:]
    return json.loads(out.read_text()), p.stdout + p.stderr


def test_good_passwords_pass_the_checks(run):
    results, _ = run
    assert results["carrier-ok"]["task"] == "Render pjsip_carriers.conf", results["carrier-ok"]
    assert results["users-ok"]["task"] == "none", results["users-ok"]


@pytest.mark.parametrize(("case", "words"), [(k, w) for k, (_, w) in BAD.items()], ids=list(BAD))
def test_a_bad_carrier_password_is_refused_naming_the_variable_not_the_value(run, case, words):
    results, _ = run
    got = results[f"carrier-{case}"]
    assert got["task"] == "Check each carrier", got
    assert f"speaqr_asterisk_carriers[0].password {words}" in got["msg"], got
    assert BAD[case][0] not in got["msg"]


@pytest.mark.parametrize(("case", "words"), [(k, w) for k, (_, w) in BAD.items()], ids=list(BAD))
def test_a_bad_user_password_is_refused_naming_the_variable_not_the_value(run, case, words):
    results, _ = run
    got = results[f"users-{case}"]
    assert got["task"] == "Check the characters of the users' passwords", got
    assert f"speaqr_users[1] (amy).password {words}" in got["msg"], got
    assert "speaqr_users[0]" not in got["msg"], got
    assert BAD[case][0] not in got["msg"]


@pytest.mark.parametrize("secret", SECRETS, ids=[s.strip().replace("\n", "LF").replace("\r", "CR") for s in SECRETS])
def test_no_password_appears_in_the_vvv_output(run, secret):
    _, output = run
    assert "Check each carrier" in output and "Check the characters of the users' passwords" in output
    # The value itself, and its distinctive tail (in case quoting or escaping split it).
    assert secret not in output
    assert secret[-6:] not in output
