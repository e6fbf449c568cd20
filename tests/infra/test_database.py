"""The users table holds exactly the inventory's present users; the app account is least-privilege."""

COLUMNS = ("username", "email", "source_language", "target_language", "voice", "enabled")


def test_users_table_matches_inventory(mysql, present_users):
    rows = mysql("SELECT " + ", ".join(COLUMNS) + " FROM users ORDER BY username")
    actual = [tuple(row) for row in rows]
    expected = [
        (
            u["username"],
            u["email"],
            u["source_language"],
            u["target_language"],
            u["voice"],
            "1" if u["enabled"] else "0",
        )
        for u in present_users
    ]
    assert actual == expected


def test_migrations_recorded(mysql):
    versions = [row[0] for row in mysql("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions and versions[0].startswith("0001_")


def test_app_account_is_least_privilege(mysql, inventory):
    user = inventory["speaqr_mariadb_app_user"]
    for host_part in ("localhost", "127.0.0.1"):
        grants = " ".join(row[0] for row in mysql(f"SHOW GRANTS FOR '{user}'@'{host_part}'"))
        assert "ALL PRIVILEGES" not in grants
        assert "GRANT USAGE ON *.*" in grants
        assert "ON `speaqr`.* " not in grants.replace(inventory["speaqr_mariadb_database"], "speaqr")


def test_call_records_rows_may_be_open_while_the_call_lasts(mysql, inventory):
    rows = mysql(
        "SELECT column_name, is_nullable FROM information_schema.columns "
        f"WHERE table_schema = '{inventory['speaqr_mariadb_database']}' AND table_name = 'call_records' "
        "AND column_name IN ('ended_at', 'sip_status', 'cause') ORDER BY column_name"
    )
    assert [tuple(r) for r in rows] == [("cause", "NO"), ("ended_at", "YES"), ("sip_status", "YES")]
    versions = [row[0] for row in mysql("SELECT version FROM schema_migrations ORDER BY version")]
    assert "0101_call_records_open_rows" in versions


def test_call_records_say_which_processor_served_which_part(mysql, inventory):
    rows = mysql(
        "SELECT data_type, character_maximum_length, is_nullable FROM information_schema.columns "
        f"WHERE table_schema = '{inventory['speaqr_mariadb_database']}' AND table_name = 'call_records' "
        "AND column_name = 'processor_parts'"
    )
    assert [tuple(r) for r in rows] == [("varchar", "255", "NO")]


def test_each_program_has_exactly_the_privileges_its_code_uses(mysql, table_privileges, inventory):
    db = inventory["speaqr_mariadb_database"]
    expected = {
        # ARI application: call_records INSERT at admission, UPDATE at the end (SELECT: the WHERE).
        inventory["speaqr_mariadb_app_user"]: {"call_records": {"INSERT", "SELECT", "UPDATE"}},
        # AGI check: reads users, INSERT IGNOREs its refusals.
        inventory["speaqr_mariadb_agi_user"]: {"users": {"SELECT"}, "call_records": {"INSERT"}},
    }
    for user, tables in expected.items():
        for host_part in ("localhost", "127.0.0.1"):
            assert table_privileges(user, host_part, db) == tables, (user, host_part)
