"""Carrier trunks and the call service's configuration on the host, compared with its inventory:
PJSIP objects, the carriers' own transports and their firewall opening, the carriers' context,
the application's [call]/[policy] settings and the call_records grants."""

from __future__ import annotations

import re
import tomllib

import pytest

CARRIER_VARS = (
    "speaqr_asterisk_carriers",
    "speaqr_asterisk_carriers_context",
    "speaqr_asterisk_users_context",
    "speaqr_ari_call_carrier",
    "speaqr_ari_call_answer_timeout",
    "speaqr_ari_policy_allowed_prefixes",
    "speaqr_ari_policy_blocked_prefixes",
    "speaqr_ari_policy_max_calls_per_user",
    "speaqr_ari_policy_max_calls_total",
    "speaqr_ari_config_dir",
    "speaqr_mariadb_app_user",
    "speaqr_mariadb_database",
)


@pytest.fixture(scope="module")
def carrier_inventory(host):
    if host.backend.NAME != "ansible":
        pytest.skip("reads the inventory: run with testinfra's ansible backend")
    expr = "[" + ",".join(f"{name}|default(None)" for name in CARRIER_VARS) + "]"
    values = host.ansible("debug", f"var={expr}", check=False).get(expr)
    if not isinstance(values, list):
        pytest.fail(f"could not read the inventory: {values!r}")
    inv = dict(zip(CARRIER_VARS, values, strict=True))
    inv["carriers"] = [c for c in inv["speaqr_asterisk_carriers"] or [] if c.get("state", "present") == "present"]
    return inv


@pytest.fixture(scope="module")
def carriers(carrier_inventory):
    if not carrier_inventory["carriers"]:
        pytest.skip("no carrier trunk in this inventory")
    return carrier_inventory["carriers"]


def _own_transport(c: dict) -> bool:
    return c.get("transport", "tls") != "tls"


def test_carrier_files_are_private(files, carriers):
    got = files("/etc/asterisk/pjsip_carriers.conf", "/etc/asterisk/extensions_carriers.conf")
    for path, st in got.items():
        assert st is not None, f"{path} is missing"
        assert (st["mode"], st["user"], st["group"]) == (0o640, "asterisk", "asterisk"), (path, st)


def test_carrier_endpoints_land_in_the_carriers_context(asterisk, carriers, carrier_inventory):
    context = carrier_inventory["speaqr_asterisk_carriers_context"]
    for c in carriers:
        out = asterisk(f"pjsip show endpoint {c['name']}")
        assert re.search(rf"^\s*context\s*:\s*{re.escape(context)}\s*$", out, re.M), out
        assert re.search(r"^\s*allow\s*:\s*\(ulaw\)\s*$", out, re.M), out
        encryption = "sdes" if c.get("srtp", True) else "no"
        assert re.search(rf"^\s*media_encryption\s*:\s*{encryption}\s*$", out, re.M), out
        transport = (
            "transport-tls" if not _own_transport(c) else f"transport-carrier-{c['transport']}-{c['local_port']}"
        )
        assert re.search(rf"^\s*transport\s*:\s*{re.escape(transport)}\s*$", out, re.M), out
        contact = asterisk(f"pjsip show aor {c['name']}")
        assert f"sip:{c['host']}:" in contact, contact


def test_carriers_context_only_refuses(asterisk, carrier_inventory, carriers):
    context = carrier_inventory["speaqr_asterisk_carriers_context"]
    out = asterisk(f"dialplan show {context}")
    apps = set(re.findall(r"\b([A-Z][A-Za-z]+)\(", out))
    assert apps, out
    assert apps <= {"Log", "PJSIPHangup", "Hangup", "NoOp", "FILTER", "CHANNEL"}, (
        f"{context} does more than refuse: {out}"
    )
    assert "Include" not in out and carrier_inventory["speaqr_asterisk_users_context"] not in out, out


def test_own_carrier_transports_listen_where_the_inventory_says(listening, carriers):
    for c in filter(_own_transport, carriers):
        found = [s for s in listening if s["proto"] == c["transport"] and s["port"] == int(c["local_port"])]
        assert found and all(s["process"] == "asterisk" for s in found), (c["name"], found)
        assert {s["address"] for s in found} == {c.get("local_address", "0.0.0.0")}, found


def test_own_carrier_transports_are_open_to_the_carrier_only(host, as_root, carriers):
    with as_root():
        chain = host.check_output("nft list chain inet filter input")
    for c in filter(_own_transport, carriers):
        rules = [line.strip() for line in chain.splitlines() if f"dport {int(c['local_port'])} " in line]
        sources = c.get("addresses") or [c["host"]]
        assert rules, f"no rule opens {c['transport']}/{c['local_port']} for {c['name']}: {chain}"
        for rule in rules:
            assert "saddr" in rule, f"{c['transport']}/{c['local_port']} is open to everyone: {rule}"
            assert all(s in rule for s in sources), (rule, sources)


def test_application_dials_the_configured_carrier(host, as_root, carrier_inventory, carriers):
    path = f"{carrier_inventory['speaqr_ari_config_dir'] or '/etc/speaqr-sip'}/ari.toml"
    with as_root():
        cfg = tomllib.loads(host.file(path).content_string)
    chosen = carrier_inventory["speaqr_ari_call_carrier"] or {}
    assert cfg["call"]["trunk_endpoint_template"] == f"PJSIP/{{number}}@{chosen.get('name', 'carrier')}"
    assert chosen.get("name") in {c["name"] for c in carriers}
    assert cfg["call"]["callerid_policy"] == ("fixed" if chosen.get("callerid") == "fixed" else "username")
    assert cfg["call"]["number_format"] == chosen.get("number_format", "e164")
    assert cfg["call"]["answer_timeout"] == float(carrier_inventory["speaqr_ari_call_answer_timeout"])
    policy = cfg["policy"]
    assert policy["allowed_prefixes"] == [str(p) for p in carrier_inventory["speaqr_ari_policy_allowed_prefixes"]]
    assert policy["blocked_prefixes"] == [str(p) for p in carrier_inventory["speaqr_ari_policy_blocked_prefixes"]]
    assert policy["max_calls_per_user"] == int(carrier_inventory["speaqr_ari_policy_max_calls_per_user"])
    assert policy["max_calls_total"] == int(carrier_inventory["speaqr_ari_policy_max_calls_total"])
    with as_root():
        agi = tomllib.loads(host.file(path.replace("ari.toml", "agi.toml")).content_string)
    assert agi["policy"] == policy, "agi.toml and ari.toml must hold the same [policy]"


def test_application_account_may_write_call_records(host, as_root, carrier_inventory):
    user = carrier_inventory["speaqr_mariadb_app_user"]
    db = carrier_inventory["speaqr_mariadb_database"]
    with as_root():
        grants = host.check_output(f"mariadb --batch --skip-column-names -e \"SHOW GRANTS FOR '{user}'@'localhost'\"")
    line = next((g for g in grants.splitlines() if f"`{db}`.`call_records`" in g), None)
    assert line, grants
    privileges = {p.strip() for p in line.split(" ON ")[0].removeprefix("GRANT ").split(",")}
    assert privileges == {"SELECT", "INSERT", "UPDATE"}, line
