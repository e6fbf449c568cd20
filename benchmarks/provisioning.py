"""Provisioning at scale: `playbooks/users.yml` with N users on a provisioned target.

Figures (wall time of each ansible-playbook run, and the tasks it reported changed):

* converge N users from the inventory's own users (N rows and PJSIP objects added);
* the same again (nothing to change: must report changed=0);
* add one user among N, then remove it again (one row, one PJSIP reload);
* restore the inventory's users (not timed as a figure; leaves the target as it was).

Run from the repository root against the molecule target (or any inventory with --inventory):

    .venv/bin/python benchmarks/provisioning.py --users 10000 --label nspawn

`--users 50` is the smoke mode CI can afford. Writes benchmarks/results/provisioning-<label>-<UTC
time>.json and .md, with the command that reproduces the run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def molecule_inventory() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.default/inventory")))
    return found[0] if found else None


def generated_users(count: int) -> list[dict]:
    return [
        {
            "username": f"bench{i:05d}",
            "password": secrets.token_urlsafe(18),
            "email": f"bench{i:05d}@bench.example",
            "source_language": "en-us",
            "target_language": "es-es",
        }
        for i in range(count)
    ]


def apply_users(inventory: str, limit: str, users: list[dict]) -> dict:
    """One run of playbooks/users.yml with speaqr_users overridden: {seconds, changed}."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as extra:
        os.chmod(extra.name, 0o600)
        json.dump({"speaqr_users": users}, extra)
    env = {**os.environ}
    env.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(ROOT / "inventory" / "example" / "lab-vault-password"))
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        inventory,
        str(ROOT / "playbooks" / "users.yml"),
        "--limit",
        limit,
        "-e",
        f"@{extra.name}",
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        os.unlink(extra.name)
    seconds = time.monotonic() - started
    recap = RECAP.findall(proc.stdout)
    if proc.returncode != 0 or not recap:
        sys.exit(f"users.yml failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    _ok, changed, _unreachable, _failed = (int(v) for v in recap[-1])
    return {"seconds": round(seconds, 1), "changed": changed}


def inventory_users(inventory: str, limit: str) -> list[dict]:
    env = {**os.environ}
    env.setdefault("ANSIBLE_VAULT_PASSWORD_FILE", str(ROOT / "inventory" / "example" / "lab-vault-password"))
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "-i",
            inventory,
            limit,
            "-m",
            "ansible.builtin.debug",
            "-a",
            "var=speaqr_users",
            "-o",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return json.loads(out.split("=>", 1)[1])["speaqr_users"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=10000, help="users to provision (smoke: 50)")
    parser.add_argument("--inventory", default=molecule_inventory(), help="default: the molecule default scenario's")
    parser.add_argument("--limit", default="speaqr_sip")
    parser.add_argument("--label", default="nspawn")
    args = parser.parse_args()
    if not args.inventory:
        sys.exit("no inventory: converge the molecule default scenario or pass --inventory")

    own = inventory_users(args.inventory, args.limit)
    bulk = own + generated_users(args.users)
    extra_user = generated_users(args.users + 1)[-1]
    figures = {}
    try:
        figures["converge"] = apply_users(args.inventory, args.limit, bulk)
        figures["rerun_unchanged"] = apply_users(args.inventory, args.limit, bulk)
        figures["add_one"] = apply_users(args.inventory, args.limit, bulk + [extra_user])
        figures["remove_one"] = apply_users(args.inventory, args.limit, bulk)
    finally:
        figures["restore"] = apply_users(args.inventory, args.limit, own)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = f".venv/bin/python benchmarks/provisioning.py --users {args.users} --label {args.label}"
    result = {
        "benchmark": "provisioning",
        "label": args.label,
        "date": stamp,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "users": args.users + len(own),
        "figures": figures,
        "command": command,
    }
    RESULTS.mkdir(exist_ok=True)
    base = RESULTS / f"provisioning-{args.label}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {f['seconds']} | {f['changed']} |" for name, f in figures.items())
    base.with_suffix(".md").write_text(
        f"# provisioning, {result['users']} users ({args.label}, {stamp})\n\n"
        f"Machine: {result['machine']}\n\n| run of users.yml | seconds | tasks changed |\n|---|---|---|\n"
        f"{rows}\n\nReproduce: `{command}`\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
