"""Fixtures of the infrastructure tests: the inventory's view of the host under test.

The suite runs against any host testinfra is pointed at through its ansible backend
(molecule's instances, or a staging host of a real inventory), so every expected value is read
from that host's inventory, templated by Ansible (vault values decrypted), never hard-coded.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

# tests.playbook (the playbook runner shared with the unit tests) however pytest is started.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Inventory variables the tests compare the host with.
INVENTORY_VARS = (
    "speaqr_users",
    "speaqr_asterisk_keep_alive_interval",
    "speaqr_base_firewall_enabled",
    "speaqr_base_firewall_tcp_ports",
    "speaqr_base_firewall_udp_ports",
    "speaqr_mariadb_database",
    "speaqr_mariadb_bind_address",
    "speaqr_mariadb_port",
    "speaqr_mariadb_app_user",
    "speaqr_mariadb_agi_user",
    "speaqr_backup_enabled",
    "speaqr_backup_schedule",
    "speaqr_backup_keep",
    "speaqr_backup_directory",
    "speaqr_backup_user",
    "speaqr_backup_tables",
    "speaqr_tls_mode",
    "speaqr_tls_certificate_path",
    "speaqr_tls_private_key_path",
    "speaqr_tls_group",
    "speaqr_tls_lab_ca_dir",
    "speaqr_asterisk_tls_bind_address",
    "speaqr_asterisk_tls_port",
    "speaqr_asterisk_tls_method",
    "speaqr_asterisk_tls_ciphers",
    "speaqr_asterisk_http_bind_address",
    "speaqr_asterisk_http_port",
    "speaqr_asterisk_rtp_port_start",
    "speaqr_asterisk_rtp_port_end",
    "speaqr_asterisk_ari_password",
    "speaqr_asterisk_users_context",
    "speaqr_users_pjsip_file",
    "speaqr_sip_address",
    "ansible_host",
)


@pytest.fixture(scope="module")
def inventory(host) -> dict[str, Any]:
    """INVENTORY_VARS as Ansible templates them for this host (None when undefined)."""
    if host.backend.NAME != "ansible":
        pytest.skip("the infrastructure tests read the inventory: run them with testinfra's ansible backend")
    expr = "[" + ",".join(f"{name}|default(None)" for name in INVENTORY_VARS) + "]"
    result = host.ansible("debug", f"var={expr}", check=False)
    values = result.get(expr)
    if not isinstance(values, list) or len(values) != len(INVENTORY_VARS):
        pytest.fail(f"could not read the inventory of the host under test: {result!r}")
    return dict(zip(INVENTORY_VARS, values, strict=True))


@pytest.fixture(scope="module")
def present_users(inventory) -> list[dict[str, Any]]:
    """The inventory's users that must exist, with the role's defaults applied."""
    users = []
    for user in inventory["speaqr_users"] or []:
        merged = {"voice": "N", "enabled": True, "state": "present", **user}
        if merged["state"] == "present":
            users.append(merged)
    return sorted(users, key=lambda u: u["username"])


@pytest.fixture(scope="module")
def as_root(host):
    """A context manager that runs commands as root (sudo unless already root)."""
    if host.user().name == "root":
        import contextlib

        return contextlib.nullcontext
    return host.sudo


@pytest.fixture(scope="module")
def listening(host, as_root) -> list[dict[str, Any]]:
    """Listening TCP and bound UDP sockets: [{proto, address, port, process}]."""
    with as_root():
        out = host.check_output("ss -H -l -n -t -u -p")
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, local = fields[0], fields[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        process = re.search(r'users:\(\("([^"]+)"', line)
        sockets.append(
            {"proto": proto, "address": address, "port": int(port), "process": process.group(1) if process else ""}
        )
    return sockets


_STAT_SCRIPT = r"""
import grp, json, os, pwd, sys
out = {}
for path in sys.argv[1:]:
    try:
        st = os.stat(path)
    except OSError:
        out[path] = None
        continue
    content = ""
    if os.path.isfile(path) and st.st_size < 1 << 20:
        with open(path, errors="replace") as f:
            content = f.read()
    out[path] = {"mode": st.st_mode & 0o7777, "user": pwd.getpwuid(st.st_uid).pw_name,
                 "group": grp.getgrgid(st.st_gid).gr_name, "content": content}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def files(host, as_root):
    """Reads several files in one round trip: {path: {mode, user, group, content} or None}."""

    def read(*paths: str) -> dict[str, Any]:
        import json
        import shlex

        with as_root():
            out = host.check_output("python3 -c " + shlex.quote(_STAT_SCRIPT) + " " + " ".join(map(shlex.quote, paths)))
        return json.loads(out)

    return read


@pytest.fixture(scope="module")
def asterisk(host, as_root):
    """Runs an Asterisk CLI command on the host and returns its output."""

    def run(command: str) -> str:
        with as_root():
            return host.check_output(f"asterisk -rx {command!r}")

    return run


@pytest.fixture(scope="module")
def mysql(host, as_root, inventory):
    """Run SQL in the appliance's database as MariaDB's root; rows as lists of strings."""
    database = inventory["speaqr_mariadb_database"]

    def query(sql: str) -> list[list[str]]:
        with as_root():
            out = host.check_output(f"mariadb --batch --skip-column-names -e {sql!r} {database}")
        return [line.split("\t") for line in out.splitlines()]

    return query


@pytest.fixture(scope="module")
def table_privileges(mysql):
    """(user, host part, database) -> {table: privileges} from SHOW GRANTS."""

    def grants(user: str, host_part: str, db: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for row in mysql(f"SHOW GRANTS FOR '{user}'@'{host_part}'"):
            line = row[0]
            if f" ON `{db}`.`" not in line:
                continue
            privileges, on = line.removeprefix("GRANT ").split(" ON ", 1)
            table = on.split("`.`", 1)[1].split("`", 1)[0]
            out[table] = {p.strip() for p in privileges.split(",")}
        return out

    return grants
