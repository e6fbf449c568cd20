"""Packages installed, services active and enabled (the journal is printed when one is not)."""

import pytest

PACKAGES = ["asterisk", "asterisk-modules", "mariadb-server", "nftables", "python3-pymysql"]
SERVICES = ["asterisk", "mariadb", "nftables"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed, f"package {name} is not installed"


@pytest.mark.parametrize("name", SERVICES)
def test_service_active_and_enabled(host, as_root, name):
    service = host.service(name)
    active, enabled = service.is_running, service.is_enabled
    if not (active and enabled):
        with as_root():
            journal = host.run(f"journalctl -u {name}.service -n 60 --no-pager").stdout
        pytest.fail(f"{name}: active={active} enabled={enabled}\n--- journal of {name} ---\n{journal}")
