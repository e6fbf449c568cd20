"""Asterisk's running state: modules, transport, endpoints of the inventory, security log."""

import re


def test_every_configured_module_runs(host, as_root, asterisk):
    with as_root():
        conf = host.file("/etc/asterisk/modules.conf").content_string
    wanted = set(re.findall(r"^load\s*=>\s*(\S+)", conf, re.M))
    shown = asterisk("module show")
    running = {line.split()[0] for line in shown.splitlines() if re.search(r"\sRunning\s", line)}
    assert wanted, "modules.conf loads nothing"
    assert not wanted - running, f"configured but not running: {sorted(wanted - running)}"
    assert "chan_sip.so" not in running


def test_tls_transport_method_and_ciphers_are_the_inventorys(asterisk, inventory):
    shown = asterisk("pjsip show transport transport-tls")
    assert re.search(r"^\s*protocol\s*:\s*tls\s*$", shown, re.M), shown
    method = inventory["speaqr_asterisk_tls_method"]
    assert re.search(rf"^\s*method\s*:\s*{re.escape(method)}\s*$", shown, re.M), shown
    # Asterisk lists the suites it accepted (an unknown name fails the transport): ", "-separated.
    found = re.search(r"^\s*cipher\s*:\s*(.*?)\s*$", shown, re.M)
    assert found, shown
    assert [c.strip() for c in found.group(1).split(",")] == inventory["speaqr_asterisk_tls_ciphers"], shown


def test_connections_get_keepalives_as_often_as_the_inventory_says(asterisk, inventory):
    shown = asterisk("pjsip show settings")
    found = re.search(r"^\s*keep_alive_interval\s*:\s*(\d+)\s*$", shown, re.M)
    assert found, shown
    assert int(found.group(1)) == int(inventory["speaqr_asterisk_keep_alive_interval"]), found.group(0)


def test_endpoints_match_inventory(asterisk, present_users):
    shown = asterisk("pjsip show endpoints")
    endpoints = set(re.findall(r"^\s*Endpoint:\s+([^\s/<]+)/", shown, re.M))
    assert endpoints == {u["username"] for u in present_users}


def test_no_anonymous_endpoint(asterisk):
    shown = asterisk("pjsip show endpoints")
    assert not re.search(r"^\s*Endpoint:\s+anonymous\b", shown, re.M)


def test_security_log_channel(asterisk):
    shown = asterisk("logger show channels")
    assert re.search(r"security\.log.*Security", shown, re.S | re.I), shown


def test_users_context_services_run_the_check_then_stasis(asterisk, inventory):
    context = inventory["speaqr_asterisk_users_context"]
    shown = asterisk(f"dialplan show loopback@{context}")
    assert "Goto(speaqr-service-loopback,s,1)" in shown, shown
    shown = asterisk("dialplan show speaqr-service-loopback")
    assert "Gosub(speaqr-admit," in shown and "Stasis(loopback,loopback)" in shown, shown
