"""The ARI application, the AGI check and (lab) the stand-in Speaqr as installed by speaqr_ari:
services, listening sockets, configuration modes, the installed package, the registered ARI
application, the dialplan's services and the users' processor column. Expectations come from
the host's inventory."""

from __future__ import annotations

import json
import re
import shlex

import pytest

VARS = (
    "speaqr_ari_agi_mode",
    "speaqr_ari_fastagi_port",
    "speaqr_ari_fake_speaqr_enabled",
    "speaqr_ari_fake_speaqr_port",
    "speaqr_ari_config_dir",
    "speaqr_ari_install_dir",
    "speaqr_ari_user",
    "speaqr_ari_agi_user",
    "speaqr_ari_app_name",
    "speaqr_asterisk_users_context",
    "speaqr_asterisk_echo_extension_enabled",
    "speaqr_asterisk_echo_extension",
    "speaqr_mariadb_database",
    "speaqr_users",
)


@pytest.fixture(scope="module")
def ari(host):
    if host.backend.NAME != "ansible":
        pytest.skip("reads the inventory: run with testinfra's ansible backend")
    expr = "[" + ",".join(f"{name}|default(None)" for name in VARS) + "]"
    values = host.ansible("debug", f"var={expr}", check=False).get(expr)
    if not isinstance(values, list):
        pytest.fail(f"could not read the inventory: {values!r}")
    v = dict(zip(VARS, values, strict=True))
    if v["speaqr_ari_agi_mode"] is None:
        pytest.skip("speaqr_ari is not in this host's inventory")
    return v


def _units(ari) -> dict[str, bool]:
    return {
        "speaqr-ari": True,
        "speaqr-fastagi": ari["speaqr_ari_agi_mode"] == "fastagi",
        "speaqr-fake-speaqr": bool(ari["speaqr_ari_fake_speaqr_enabled"]),
    }


@pytest.mark.parametrize("unit", ["speaqr-ari", "speaqr-fastagi", "speaqr-fake-speaqr"])
def test_service_state_follows_the_inventory(host, as_root, ari, unit):
    wanted = _units(ari)[unit]
    service = host.service(unit)
    running, enabled = service.is_running, service.is_enabled
    if (running, enabled) != (wanted, wanted):
        with as_root():
            journal = host.run(f"journalctl -u {unit}.service -n 60 --no-pager").stdout
        pytest.fail(f"{unit}: running={running} enabled={enabled}, want {wanted}\n--- journal ---\n{journal}")


def test_fastagi_and_stand_in_listen_on_loopback_only(listening, ari):
    expected = {}
    if ari["speaqr_ari_agi_mode"] == "fastagi":
        expected[int(ari["speaqr_ari_fastagi_port"])] = "FastAGI"
    if ari["speaqr_ari_fake_speaqr_enabled"]:
        expected[int(ari["speaqr_ari_fake_speaqr_port"])] = "stand-in Speaqr"
    for port, what in expected.items():
        found = [s for s in listening if s["proto"] == "tcp" and s["port"] == port]
        assert found, f"{what} does not listen on TCP {port}"
        assert all(s["address"] in ("127.0.0.1", "::1") for s in found), f"{what} not on loopback only: {found}"


def test_configuration_files_hold_secrets_safely(files, ari):
    d = ari["speaqr_ari_config_dir"]
    paths = [f"{d}/ari.toml", f"{d}/agi.toml"]
    if ari["speaqr_ari_fake_speaqr_enabled"]:
        paths.append(f"{d}/fake-speaqr.env")
    found = files(*paths)
    expected_group = {
        f"{d}/ari.toml": ari["speaqr_ari_user"],
        f"{d}/agi.toml": ari["speaqr_ari_agi_user"],
        f"{d}/fake-speaqr.env": ari["speaqr_ari_user"],
    }
    for path in paths:
        meta = found[path]
        assert meta is not None, f"{path} is missing"
        assert (meta["mode"], meta["user"], meta["group"]) == (0o640, "root", expected_group[path]), (path, meta)
    units = files("/etc/systemd/system/speaqr-fake-speaqr.service")["/etc/systemd/system/speaqr-fake-speaqr.service"]
    if units is not None:
        content = units["content"]
        assert f"EnvironmentFile={d}/fake-speaqr.env" in content, "the key comes from the env file"
        assert "--api-key" not in content, "the key must not be on the stand-in's command line"


def test_the_stand_in_speaqr_key_is_not_on_its_command_line(host, as_root, ari):
    if not ari["speaqr_ari_fake_speaqr_enabled"]:
        pytest.skip("the stand-in Speaqr server is not enabled")
    with as_root():
        pid = host.check_output("systemctl show -p MainPID --value speaqr-fake-speaqr").strip()
        assert pid not in ("", "0"), "speaqr-fake-speaqr is not running"
        cmdline = host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    assert "--api-key" not in cmdline, cmdline


def test_package_installed_offline_in_its_venv(host, as_root, ari):
    venv = f"{ari['speaqr_ari_install_dir']}/venv"
    with as_root():
        out = host.check_output(f"{shlex.quote(venv)}/bin/pip list --format=json --disable-pip-version-check")
    names = {p["name"].lower() for p in json.loads(out)}
    assert {"speaqr-sip", "pyst2", "pymysql", "aiohttp", "python-socketio", "numpy", "soxr"} <= names, names
    assert host.file(f"{venv}/bin/speaqr-agi-check").is_file


def test_ari_application_is_registered(host, as_root, ari):
    script = (
        "import base64,json,sys,tomllib,urllib.request;"
        "a=tomllib.load(open(sys.argv[1],'rb'))['ari'];"
        "r=urllib.request.Request(a['url'].rstrip('/')+'/ari/applications/'+a['app']);"
        "r.add_header('Authorization','Basic '+base64.b64encode((a['username']+':'+a['password']).encode()).decode());"
        "print(json.dumps(json.load(urllib.request.urlopen(r,timeout=5))))"
    )
    with as_root():
        out = host.check_output(
            "python3 -c " + shlex.quote(script) + " " + shlex.quote(f"{ari['speaqr_ari_config_dir']}/ari.toml")
        )
    assert json.loads(out)["name"] == ari["speaqr_ari_app_name"]


def test_dialplan_services_and_echo_follow_the_inventory(asterisk, ari):
    context = ari["speaqr_asterisk_users_context"]
    shown = asterisk(f"dialplan show {context}")
    for service in ("loopback", "call"):
        assert f"Goto(speaqr-service-{service},s,1)" in shown, shown
    services = asterisk("dialplan show speaqr-service-loopback")
    assert f"Stasis({ari['speaqr_ari_app_name']},loopback)" in services
    assert "PJSIPHangup(503)" in services, "no 503 when Stasis fails"
    echo = f"'{ari['speaqr_asterisk_echo_extension']}' =>"
    assert (echo in shown) == bool(ari["speaqr_asterisk_echo_extension_enabled"]), shown
    assert "Echo()" not in services


def test_users_processor_column_matches_the_inventory(host, as_root, ari):
    db = ari["speaqr_mariadb_database"]
    query = f"SELECT username, IFNULL(processor, 'default') FROM {db}.users"
    with as_root():
        out = host.check_output(f"mariadb -N -B -e {shlex.quote(query)}")
    rows = dict(line.split("\t") for line in out.splitlines() if line.strip())
    for user in ari["speaqr_users"] or []:
        if user.get("state", "present") == "absent":
            continue
        assert rows.get(user["username"]) == user.get("processor", "default"), (user["username"], rows)


# systemd-analyze security's exposure (0 = fully sandboxed, 10 = not at all); every unit of the
# project must stay at or below this. Before the sandbox: 8.3 (speaqr-ari, speaqr-fastagi).
EXPOSURE_LIMIT = 4.0


# Asterisk starts as root (it switches user and raises its priority itself): its limit is higher.
# Before its sandbox: 9.6.
ASTERISK_EXPOSURE_LIMIT = 5.0


def exposure(host, as_root, unit: str) -> float:
    with as_root():
        out = host.check_output(f"systemd-analyze security --no-pager {unit}.service | tail -1")
    match = re.search(r"exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


@pytest.mark.parametrize("unit", ["speaqr-ari", "speaqr-fastagi", "speaqr-fake-speaqr"])
def test_each_unit_is_sandboxed_below_the_exposure_limit(host, as_root, ari, unit):
    if not _units(ari)[unit]:
        pytest.skip(f"{unit} is not enabled in this inventory")
    assert exposure(host, as_root, unit) <= EXPOSURE_LIMIT, unit


def test_asterisk_is_sandboxed_below_its_exposure_limit(host, as_root):
    assert exposure(host, as_root, "asterisk") <= ASTERISK_EXPOSURE_LIMIT


def test_the_fastagi_port_is_held_by_systemd_and_served_by_its_own_user(host, as_root, ari):
    if ari["speaqr_ari_agi_mode"] != "fastagi":
        pytest.skip("the AGI check runs as plain AGI here")
    socket_unit = host.service("speaqr-fastagi.socket")
    assert socket_unit.is_running and socket_unit.is_enabled, "speaqr-fastagi.socket is not active and enabled"
    with as_root():
        listeners = host.check_output(f"ss -H -l -n -t -p 'sport = :{ari['speaqr_ari_fastagi_port']}'")
        pid = host.check_output("systemctl show -p MainPID --value speaqr-fastagi.service").strip()
        user = host.check_output(f"ps -o user= -p {pid}").strip()
    assert "systemd" in listeners, f"the FastAGI port is not held by systemd: {listeners}"
    assert user == ari["speaqr_ari_agi_user"], f"speaqr-fastagi runs as {user}"
