"""Removing a user from the inventory and converging again: that user can no longer REGISTER,
while an established call of another user stays up (users apply by PJSIP reload, no restart).

This test changes the target's users (it adds a probe account, then removes it again with
``playbooks/users.yml``), so it runs under molecule (``MOLECULE_INVENTORY_FILE``) or when
``SPEAQR_ALLOW_USER_CHANGES=1`` with ``SPEAQR_INVENTORY`` naming the inventory; otherwise it
is skipped. The target ends with exactly the inventory's users again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sip.harness import ROOT

PROBE_USER = "qa-removal-probe"


def _inventory() -> str | None:
    if os.environ.get("MOLECULE_INVENTORY_FILE"):
        return os.environ["MOLECULE_INVENTORY_FILE"]
    if os.environ.get("SPEAQR_ALLOW_USER_CHANGES") == "1":
        return os.environ.get("SPEAQR_INVENTORY")
    return None


def _inventory_users(host) -> list[dict]:
    users = host.ansible("debug", "var=speaqr_users", check=False).get("speaqr_users")
    assert isinstance(users, list), f"speaqr_users not readable from the inventory: {users!r}"
    return users


def _apply_users(users: list[dict], limit: str, workdir: Path) -> float:
    """Run playbooks/users.yml with ``speaqr_users`` overridden; returns its duration (s)."""
    extra = workdir / "speaqr-users.json"
    extra.touch(mode=0o600)
    extra.write_text(json.dumps({"speaqr_users": users}))
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        _inventory(),
        str(ROOT / "playbooks" / "users.yml"),
        "--limit",
        limit,
        "-e",
        f"@{extra}",
    ]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    finally:
        extra.unlink(missing_ok=True)
    assert p.returncode == 0, f"users.yml failed (rc={p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-2000:]}"
    return time.monotonic() - t0


@pytest.mark.skipif(
    _inventory() is None,
    reason="changes users: only under molecule or with SPEAQR_ALLOW_USER_CHANGES=1 and SPEAQR_INVENTORY",
)
def test_removed_user_cannot_register_while_another_users_call_stays_up(
    host, sip, sip_target, audio_files, tmp_path, sip_metrics
):
    limit = sip_target.inventory_hostname
    assert limit, "needs testinfra's ansible backend"
    users = _inventory_users(host)
    assert all(u.get("username") != PROBE_USER for u in users)
    probe = {
        "username": PROBE_USER,
        "password": secrets.token_urlsafe(18),
        "email": "qa-probe@example.invalid",
        "source_language": "en-us",
        "target_language": "es-es",
        "voice": "N",
        "state": "present",
    }
    caller = sip_target.first_user
    held = None
    added = False
    try:
        _apply_users([*users, probe], limit, tmp_path)
        added = True
        r = sip.register(PROBE_USER, password=probe["password"])
        assert r["ok"], f"probe user could not register after being added: {r}"

        held = sip.hold(caller, "loopback", "--play", str(audio_files["tone"]), workdir=tmp_path)
        assert held.state["connected"] == [True], held.state
        time.sleep(1.0)  # RTP established in both directions before the change

        # the probe user disappears from the inventory (speaqr_users_purge removes it everywhere)
        took = _apply_users(users, limit, tmp_path)
        added = False
        r = sip.register(PROBE_USER, password=probe["password"])
        assert not r["ok"], f"removed user could still register: {r}"
        assert r["status"] in (401, 403, 404), r

        result = held.stop()
        held = None
        at_stop = result["at_stop"]
        sip_metrics.append({"test": "call across user removal", "converge_s": round(took, 1), "at_stop": at_stop})
        assert at_stop["connected"], f"{caller}'s call dropped while users changed: {result}"
        assert at_stop["rtp_flowing"], f"{caller}'s call lost its media while users changed: {result}"
        assert at_stop["held_s"] >= took, result
    finally:
        if held is not None:
            held.stop()
        if added:
            _apply_users(users, limit, tmp_path)
