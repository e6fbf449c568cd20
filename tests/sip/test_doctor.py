"""speaqr-doctor on the running appliance: with a user registered (a call held) and the carrier
up, every point of the troubleshooting list is ok; each fault injected on the target (the ARI
application, the database or the stand-in Speaqr stopped, a disabled or unregistered user, a
certificate inside the warning window) is named at its point, and the point is ok again once
the fault is gone."""

from __future__ import annotations

import json
import time

import pytest

from tests.sip.loopback import wait_until_unregistered

POLL_S = 30.0


def doctor(host, *args: str) -> tuple[int, dict[str, dict]]:
    run = host.run("/opt/speaqr-sip/venv/bin/speaqr-doctor --json " + " ".join(args))
    assert run.rc in (0, 1), f"speaqr-doctor failed to run ({run.rc}): {run.stderr}"
    return run.rc, {f["point"]: f for f in json.loads(run.stdout)}


def doctor_until(host, point: str, status: str, *args: str) -> tuple[int, dict[str, dict]]:
    """Run the doctor until ``point`` has ``status`` (faults and recoveries take effect within seconds)."""
    deadline = time.monotonic() + POLL_S
    while True:
        rc, found = doctor(host, *args)
        if found.get(point, {}).get("status") == status or time.monotonic() > deadline:
            return rc, found
        time.sleep(1.0)


def test_a_served_appliance_is_ok_at_every_point(host, sip, alice, carrier, call_settings, tmp_path):
    held = sip.hold(alice, workdir=tmp_path)
    try:
        trunk = call_settings.trunk["name"]
        rc, found = doctor_until(host, f"carrier {trunk}", "ok", f"--user {alice}")
    finally:
        held.stop()
    failing = {p: f["detail"] for p, f in found.items() if f["status"] != "ok"}
    assert rc == 0 and not failing, failing
    assert set(found) >= {
        "asterisk",
        "tls-listener",
        "tls-certificate",
        f"account {alice}",
        f"media {alice}",
        f"registration {alice}",
        "rtp-ports",
        "ari-application",
        "fastagi",
        "database",
        "speaqr",
        f"carrier {trunk}",
    }
    assert f"registered from sip:{alice}@" in found[f"registration {alice}"]["detail"]


def test_a_user_without_registration_is_named(host, alice):
    wait_until_unregistered(host, alice)
    _, found = doctor_until(host, f"registration {alice}", "FAIL", f"--user {alice}")
    assert found[f"registration {alice}"]["status"] == "FAIL"
    assert "not registered" in found[f"registration {alice}"]["detail"]


def test_a_disabled_user_is_named(host, setup):
    if not setup.disabled:
        pytest.skip("no disabled user in this inventory")
    user = next(iter(setup.disabled))
    rc, found = doctor(host, f"--user {user}")
    assert rc == 1 and found[f"account {user}"]["status"] == "FAIL"
    assert "disabled" in found[f"account {user}"]["detail"]


def test_a_certificate_inside_the_warning_window_is_a_warning(host):
    _, found = doctor(host, "--certificate-warning-days 100000")
    assert found["tls-certificate"]["status"] == "warn", found["tls-certificate"]
    assert "expires in" in found["tls-certificate"]["detail"]


@pytest.mark.parametrize(
    ("unit", "point", "words"),
    [
        ("speaqr-ari", "ari-application", "is not connected"),
        ("mariadb", "database", "cannot connect"),
        ("speaqr-fake-speaqr", "speaqr", "unreachable"),
    ],
)
def test_a_stopped_service_is_named_and_ok_again_once_started(host, served_after, unit, point, words):
    if host.run(f"systemctl is-active {unit}").stdout.strip() != "active":
        pytest.skip(f"{unit} does not run in this inventory")
    host.check_output(f"systemctl stop {unit}")
    try:
        _, found = doctor_until(host, point, "FAIL")
        assert found[point]["status"] == "FAIL" and words in found[point]["detail"], found[point]
        assert found[point]["hint"]
    finally:
        host.check_output(f"systemctl start {unit}")
    _, found = doctor_until(host, point, "ok")
    assert found[point]["status"] == "ok", found[point]
    if unit != "speaqr-fake-speaqr":
        doctor_until(host, "ari-application", "ok")
        served_after()
