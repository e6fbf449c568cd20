"""Listening sockets: SIP over TLS only, HTTP/ARI and MariaDB on loopback, nothing else reachable."""


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def test_sip_tls_listens_on_the_sip_address(inventory, listening):
    port = int(inventory["speaqr_asterisk_tls_port"])
    bind = inventory["speaqr_asterisk_tls_bind_address"]
    sip_address = inventory["speaqr_sip_address"] or inventory["ansible_host"]
    found = [s for s in listening if s["proto"] == "tcp" and s["port"] == port]
    assert found, f"nothing listens on {port}/tcp"
    assert all(s["process"] == "asterisk" for s in found), found
    addresses = {s["address"] for s in found}
    assert addresses == {bind}, f"{port}/tcp listens on {addresses}, expected only {bind}"
    assert bind in ("0.0.0.0", "::", sip_address), f"the TLS transport ({bind}) does not cover {sip_address}"


def test_nothing_listens_on_5060(listening):
    found = [s for s in listening if s["port"] == 5060]
    assert not found, f"plain SIP port 5060 is open: {found}"


def test_http_ari_only_on_loopback(inventory, listening):
    port = int(inventory["speaqr_asterisk_http_port"])
    found = [s for s in listening if s["proto"] == "tcp" and s["port"] == port]
    assert found, f"the HTTP server (ARI) does not listen on {port}/tcp"
    assert {s["address"] for s in found} == {inventory["speaqr_asterisk_http_bind_address"]}
    assert all(is_loopback(s["address"]) for s in found), found


def test_mariadb_only_on_loopback(inventory, listening):
    port = int(inventory["speaqr_mariadb_port"])
    found = [s for s in listening if s["proto"] == "tcp" and s["port"] == port]
    assert found, f"MariaDB does not listen on {port}/tcp"
    assert all(is_loopback(s["address"]) for s in found), found


def test_only_ssh_and_sip_tcp_reachable_from_outside(inventory, listening):
    allowed = {22, int(inventory["speaqr_asterisk_tls_port"])}
    exposed = [
        s for s in listening if s["proto"] == "tcp" and not is_loopback(s["address"]) and s["port"] not in allowed
    ]
    assert not exposed, f"TCP listeners reachable from outside besides SSH and SIP/TLS: {exposed}"


def test_only_asterisk_binds_udp_outside_loopback(listening):
    others = [
        s
        for s in listening
        if s["proto"] == "udp" and not is_loopback(s["address"]) and s["process"] not in ("asterisk",)
    ]
    assert not others, f"UDP sockets of other processes reachable from outside: {others}"
