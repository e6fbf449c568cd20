"""Backups: the dumps are scheduled as the inventory says, run as an account that has no password
and reads only the dumped tables, keep the newest speaqr_backup_keep, and a dump restored with
playbooks/restore.yml after the tables were damaged gives back the same rows.

The restore runs the playbook against the host under test, so it runs only under molecule
(``MOLECULE_INVENTORY_FILE``: the example inventory, its vault opened with the lab password)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import pytest

from tests.playbook import run_playbook, said

DUMP_NAME = re.compile(r"^speaqr-\d{8}T\d{6}Z\.sql\.gz$")


@pytest.fixture(scope="module")
def backup(inventory):
    if not inventory["speaqr_backup_enabled"]:
        pytest.skip("speaqr_backup_enabled is false in this inventory")
    return inventory


def dumps(host, as_root, directory: str) -> list[str]:
    with as_root():
        names = host.check_output(f"ls -1 {directory}").split()
    return sorted(n for n in names if DUMP_NAME.match(n))


def take_dump(host, as_root) -> None:
    with as_root():
        host.run_test("systemctl reset-failed speaqr-backup.service")
        run = host.run("systemctl start speaqr-backup.service")
        assert run.rc == 0, f"speaqr-backup.service failed: {run.stderr}\n" + host.check_output(
            "journalctl -u speaqr-backup.service -n 20 --no-pager"
        )


def restore(*extra: str) -> subprocess.CompletedProcess[str]:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("runs playbooks/restore.yml against the host: only under molecule")
    return run_playbook(inventory, "restore.yml", *extra)


def test_the_dumps_are_scheduled_as_the_inventory_says(host, as_root, backup):
    with as_root():
        shown = host.check_output(
            "systemctl show speaqr-backup.timer -p ActiveState -p UnitFileState -p TimersCalendar"
        )
    assert "ActiveState=active" in shown and "UnitFileState=enabled" in shown, shown
    assert f"OnCalendar={backup['speaqr_backup_schedule']} ;" in shown, shown


def test_the_dumps_account_has_no_password_and_reads_only_the_dumped_tables(mysql, table_privileges, backup):
    user = backup["speaqr_backup_user"]
    db = backup["speaqr_mariadb_database"]
    plugin = mysql(
        f"SELECT JSON_VALUE(Priv, '$.plugin') FROM mysql.global_priv WHERE User = '{user}' AND Host = 'localhost'"
    )
    assert plugin == [["unix_socket"]], f"{user}@localhost must be admitted by its Unix identity only: {plugin}"
    grants = [row[0] for row in mysql(f"SHOW GRANTS FOR '{user}'@'localhost'")]
    assert grants[0].startswith("GRANT USAGE ON *.*"), grants
    assert table_privileges(user, "localhost", db) == {t: {"SELECT"} for t in backup["speaqr_backup_tables"]}


def test_a_dump_is_private_to_its_user_and_only_the_newest_are_kept(host, as_root, backup):
    directory = backup["speaqr_backup_directory"]
    user = backup["speaqr_backup_user"]
    keep = int(backup["speaqr_backup_keep"])
    planted = [f"speaqr-2000{i // 28 + 1:02d}{i % 28 + 1:02d}T000000Z.sql.gz" for i in range(keep + 1)]
    with as_root():
        for name in planted:
            host.check_output(f"install -o {user} -g {user} -m 0600 /dev/null {directory}/{name}")
    before = set(dumps(host, as_root, directory))
    take_dump(host, as_root)
    after = dumps(host, as_root, directory)
    new = sorted(set(after) - before)
    assert len(new) == 1, f"one new dump expected in {directory}: {after}"
    assert len(after) == keep, f"{len(after)} dumps kept, speaqr_backup_keep is {keep}: {after}"
    assert after == sorted(before | set(new))[-keep:], "the oldest dumps must be the ones deleted"
    d = host.file(directory)
    f = host.file(f"{directory}/{new[0]}")
    with as_root():
        assert (d.user, d.mode) == (user, 0o700) and (f.user, f.mode) == (user, 0o600)
        assert f.size > 0
        host.check_output(f"gzip -t {directory}/{new[0]}")
        for name in planted:
            host.run(f"rm -f {directory}/{name}")


def test_a_dump_restored_after_the_tables_were_damaged_gives_back_the_same_rows(host, as_root, mysql, backup):
    marker = "backup-probe-" + secrets.token_hex(6)
    mysql(
        "INSERT INTO call_records (attempt_id, username, service, started_at, ended_at, sip_status, cause) "
        f"VALUES (MD5('{marker}'), '{marker}', 'loopback', NOW(3), NOW(3), 200, 'normal')"
    )
    try:
        tables = ", ".join(backup["speaqr_backup_tables"])
        checksums = mysql(f"CHECKSUM TABLE {tables}")
        take_dump(host, as_root)
        mysql("DELETE FROM call_records")
        mysql("DELETE FROM users")
        assert mysql("SELECT COUNT(*) FROM call_records") == [["0"]]
        run = restore()
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert mysql(f"CHECKSUM TABLE {tables}") == checksums, "the restored tables differ from the dumped ones"
        assert mysql(f"SELECT COUNT(*) FROM call_records WHERE username = '{marker}'") == [["1"]]
    finally:
        mysql(f"DELETE FROM call_records WHERE username = '{marker}'")


def test_restoring_a_dump_that_does_not_exist_fails_naming_the_variable(backup):
    run = restore("-e", "speaqr_backup_restore_file=speaqr-19990101T000000Z.sql.gz")
    assert run.returncode != 0, run.stdout[-2000:]
    assert "speaqr_backup_restore_file: no dump 'speaqr-19990101T000000Z.sql.gz'" in said(run), run.stdout[-3000:]
