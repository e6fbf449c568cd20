"""No hidden ceiling: the running processes' descriptor limits cover the capacity the inventory
sizes the appliance for (read from /proc/<pid>/limits, not from the configuration), and the RTP
port range holds every call's media legs."""

from __future__ import annotations

import re

import pytest

# The roles' defaults, for an inventory that does not set the capacity.
DEFAULT_CAPACITY_CALLS = 500
DEFAULT_CAPACITY_REGISTRATIONS = 10000

# Descriptors a call needs at least: Asterisk's RTP/RTCP sockets of up to four media legs;
# the ARI application's relay sockets and Speaqr connections.
ASTERISK_PER_CALL = 8
ARI_PER_CALL = 4
# Files every process opens whatever the load (modules, logs, databases, pipes).
BASE = 1024
# MariaDB: Debian's own unit sets 32768; the appliance only needs its connections and tables.
MARIADB_MINIMUM = 16384


@pytest.fixture(scope="module")
def capacity(host) -> dict[str, int]:
    if host.backend.NAME != "ansible":
        pytest.skip("reads the inventory: run with testinfra's ansible backend")
    expr = "[speaqr_asterisk_capacity_calls|default(None),speaqr_asterisk_capacity_registrations|default(None)]"
    values = host.ansible("debug", f"var={expr}", check=False).get(expr)
    if not isinstance(values, list):
        pytest.fail(f"could not read the inventory: {values!r}")
    calls, registrations = values
    return {
        "calls": int(calls if calls is not None else DEFAULT_CAPACITY_CALLS),
        "registrations": int(registrations if registrations is not None else DEFAULT_CAPACITY_REGISTRATIONS),
    }


def open_files_limit(host, as_root, unit: str) -> tuple[int, int]:
    """(soft, hard) 'Max open files' of the unit's main process as the kernel applies them."""
    with as_root():
        pid = host.check_output(f"systemctl show -p MainPID --value {unit}").strip()
        assert pid not in ("", "0"), f"{unit} has no main process"
        limits = host.check_output(f"cat /proc/{pid}/limits")
    match = re.search(r"^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)", limits, re.MULTILINE)
    assert match, f"no 'Max open files' line in /proc/{pid}/limits of {unit}:\n{limits}"
    soft, hard = (1 << 62 if v == "unlimited" else int(v) for v in match.groups())
    return soft, hard


def test_asterisk_may_open_a_descriptor_per_registration_and_per_call_leg(host, as_root, capacity):
    needed = capacity["registrations"] + ASTERISK_PER_CALL * capacity["calls"] + BASE
    soft, _hard = open_files_limit(host, as_root, "asterisk.service")
    assert soft >= needed, (
        f"asterisk runs with at most {soft} open files; {capacity['registrations']} registrations and "
        f"{capacity['calls']} calls need {needed}"
    )


def test_the_ari_application_may_open_a_descriptor_per_relay_socket(host, as_root, capacity):
    needed = ARI_PER_CALL * capacity["calls"] + BASE
    soft, _hard = open_files_limit(host, as_root, "speaqr-ari.service")
    assert soft >= needed, f"speaqr-ari runs with at most {soft} open files; {capacity['calls']} calls need {needed}"


def test_mariadb_keeps_a_descriptor_limit_far_above_its_connections(host, as_root):
    soft, _hard = open_files_limit(host, as_root, "mariadb.service")
    assert soft >= MARIADB_MINIMUM, f"mariadbd runs with at most {soft} open files"


def test_the_rtp_port_range_holds_two_ports_per_media_leg_of_every_call(host, as_root, capacity, asterisk):
    out = asterisk("rtp show settings")
    start = re.search(r"Port start:\s+(\d+)", out)
    end = re.search(r"Port end:\s+(\d+)", out)
    assert start and end, f"no port range in 'rtp show settings':\n{out}"
    ports = int(end.group(1)) - int(start.group(1)) + 1
    assert ports >= 4 * capacity["calls"], f"{ports} RTP ports cannot carry {capacity['calls']} calls of two legs"
