"""Modes and owners of keys and configuration files, and what the configuration says."""

import pytest

CONFIGS = ["pjsip.conf", "ari.conf", "http.conf", "modules.conf", "extensions.conf", "rtp.conf", "logger.conf"]


@pytest.fixture(scope="module")
def on_host(files, inventory):
    paths = [
        inventory["speaqr_tls_private_key_path"],
        inventory["speaqr_tls_certificate_path"],
        f"{inventory['speaqr_tls_lab_ca_dir']}/lab-ca.key",
        inventory["speaqr_users_pjsip_file"],
    ]
    return files(*paths, *(f"/etc/asterisk/{name}" for name in CONFIGS))


def test_private_key_mode(on_host, inventory):
    key = on_host[inventory["speaqr_tls_private_key_path"]]
    assert key, "the TLS private key is missing"
    assert (oct(key["mode"]), key["user"], key["group"]) == ("0o640", "root", inventory["speaqr_tls_group"])


def test_certificate_mode(on_host, inventory):
    cert = on_host[inventory["speaqr_tls_certificate_path"]]
    assert cert, "the TLS certificate is missing"
    assert oct(cert["mode"]) == "0o644"
    assert "BEGIN CERTIFICATE" in cert["content"]


def test_lab_ca_key_private(on_host, inventory):
    if inventory["speaqr_tls_mode"] != "lab":
        pytest.skip("not in lab TLS mode")
    key = on_host[f"{inventory['speaqr_tls_lab_ca_dir']}/lab-ca.key"]
    assert key, "the lab CA key is missing"
    assert (oct(key["mode"]), key["user"]) == ("0o600", "root")


@pytest.mark.parametrize("name", CONFIGS)
def test_asterisk_config_not_world_readable(on_host, name):
    conf = on_host[f"/etc/asterisk/{name}"]
    assert conf, f"/etc/asterisk/{name} is missing"
    assert conf["mode"] & 0o007 == 0, f"/etc/asterisk/{name} is mode {oct(conf['mode'])}"


def test_users_file_mode(on_host, inventory):
    users = on_host[inventory["speaqr_users_pjsip_file"]]
    assert users, "the users' PJSIP file is missing"
    assert (oct(users["mode"]), users["group"]) == ("0o640", "asterisk")


def _lines(on_host, name):
    return [line.strip() for line in on_host[f"/etc/asterisk/{name}"]["content"].splitlines()]


def test_pjsip_has_one_tls_transport(on_host):
    lines = _lines(on_host, "pjsip.conf")
    assert lines.count("type=transport") == 1
    assert [line for line in lines if line.startswith("protocol=")] == ["protocol=tls"]


def test_pjsip_user_template_enforces_srtp_and_pcmu(on_host):
    lines = set(_lines(on_host, "pjsip.conf"))
    for setting in (
        "media_encryption=sdes",
        "media_encryption_optimistic=no",
        "disallow=all",
        "allow=ulaw",
        "direct_media=no",
        "rtp_symmetric=yes",
        "force_rport=yes",
        "rewrite_contact=yes",
    ):
        assert setting in lines, f"pjsip.conf lacks {setting}"
    assert [line for line in lines if line.startswith("allow=")] == ["allow=ulaw"]


def test_ari_password_stored_hashed(on_host, inventory):
    conf = on_host["/etc/asterisk/ari.conf"]["content"]
    assert "password_format=crypt" in conf
    assert "password=$6$" in conf
    assert inventory["speaqr_asterisk_ari_password"] not in conf


def test_rtp_range(on_host, inventory):
    lines = set(_lines(on_host, "rtp.conf"))
    assert f"rtpstart={inventory['speaqr_asterisk_rtp_port_start']}" in lines
    assert f"rtpend={inventory['speaqr_asterisk_rtp_port_end']}" in lines


def test_modules_conf_explicit(on_host):
    lines = _lines(on_host, "modules.conf")
    assert "autoload=no" in lines
    assert not [line for line in lines if "chan_sip.so" in line]


def test_the_asterisk_logs_rotate_by_size_hourly(host, as_root):
    with as_root():
        check = host.run("logrotate --debug /etc/logrotate.d/asterisk")
        calendar = host.check_output("systemctl show -p TimersCalendar --value logrotate.timer")
    assert check.rc == 0, f"logrotate refuses /etc/logrotate.d/asterisk:\n{check.stderr}"
    assert "maxsize" in host.file("/etc/logrotate.d/asterisk").content_string
    assert "*-*-* *:00:00" in calendar, f"logrotate.timer does not run hourly: {calendar}"
    assert host.package("logrotate").is_installed


def test_the_journal_has_a_size_cap(host):
    config = host.file("/etc/systemd/journald.conf.d/speaqr.conf")
    assert config.exists and "SystemMaxUse=" in config.content_string
