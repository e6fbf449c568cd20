"""No secret in the output of any task, even at -vvv: `playbooks/site.yml --check --diff -vvv`
against the converged host, with a carrier that registers with a password added, must not
print one vault value, user password or carrier password.

Runs under molecule (``MOLECULE_INVENTORY_FILE``), where the inventory is the example one and
its vault opens with the committed lab password, in the scenario that sets
``SPEAQR_VERBOSE_SECRET_CHECK=1`` (the nspawn one: what the tasks print does not depend on the
kind of target, and a check run under software emulation costs the VM scenario ten minutes).
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

from tests.playbook import lab_vault, run_playbook

# Values this short would match by chance anywhere in a log (none of the lab's secrets is).
MIN_SECRET_LENGTH = 8


def leaves(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in leaves(v)]
    return [str(value)] if value is not None else []


@pytest.fixture(scope="module")
def verbose_run(host, tmp_path_factory):
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("runs the site playbook in check mode: only under molecule")
    if os.environ.get("SPEAQR_VERBOSE_SECRET_CHECK") != "1":
        pytest.skip("the -vvv secret check runs in the scenario that sets SPEAQR_VERBOSE_SECRET_CHECK=1")
    vault = lab_vault()
    carrier_password = "Carrier-" + secrets.token_urlsafe(16)
    carriers = host.ansible("debug", "var=speaqr_asterisk_carriers", check=False)["speaqr_asterisk_carriers"]
    registering = {
        "name": "secret-probe",
        "host": "sip.carrier.example",
        "auth": "registration",
        "username": "probe",
        "password": carrier_password,
    }
    extra = tmp_path_factory.mktemp("no-secret") / "extra.json"
    extra.touch(mode=0o600)
    extra.write_text(json.dumps({"speaqr_asterisk_carriers": [*carriers, registering]}))
    p = run_playbook(inventory, "site.yml", "--check", "--diff", "-vvv", "-e", f"@{extra}", timeout=1800)
    extra.unlink()
    found = [s for s in leaves(vault) if len(s) >= MIN_SECRET_LENGTH]
    assert found, "no secret read from the lab vault"
    return p, found + [carrier_password]


def test_the_verbose_check_run_succeeds(verbose_run):
    p, _ = verbose_run
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_no_secret_appears_in_the_verbose_output(verbose_run):
    p, values = verbose_run
    output = p.stdout + p.stderr
    assert "secret-probe" in output, "the carrier with a password never reached the carrier tasks"
    leaked = [f"secret #{i} ({len(v)} characters)" for i, v in enumerate(values) if v in output]
    assert not leaked, f"the -vvv output of site.yml --check --diff contains {leaked}"
