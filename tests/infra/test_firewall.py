"""The nftables ruleset: inbound default drop, and exactly the configured ports accepted."""

import re

import pytest


@pytest.fixture(scope="module")
def input_chain(host, as_root, inventory):
    if not inventory["speaqr_base_firewall_enabled"]:
        pytest.skip("speaqr_base_firewall_enabled is false for this host")
    with as_root():
        return host.check_output("nft list chain inet filter input")


def _ports(text: str) -> set[str]:
    return {p.strip() for p in text.split(",") if p.strip()}


def _accepted(chain: str, proto: str) -> set[str]:
    match = re.search(rf"{proto} dport (\{{([^}}]*)\}}|(\S+)) accept", chain)
    if not match:
        return set()
    return _ports(match.group(2) if match.group(2) is not None else match.group(3))


def test_input_policy_is_drop(input_chain):
    assert "policy drop;" in input_chain


def test_loopback_and_established_accepted(input_chain):
    assert 'iif "lo" accept' in input_chain
    assert re.search(r"ct state (established,related|\{ established, related \}) accept", input_chain)


def test_tcp_ports_accepted(input_chain, inventory):
    expected = {str(p) for p in inventory["speaqr_base_firewall_tcp_ports"]}
    assert _accepted(input_chain, "tcp") == expected


def test_udp_ports_accepted(input_chain, inventory):
    expected = {str(p) for p in inventory["speaqr_base_firewall_udp_ports"]}
    assert _accepted(input_chain, "udp") == expected


def test_rtp_range_open(inventory):
    rtp = f"{inventory['speaqr_asterisk_rtp_port_start']}-{inventory['speaqr_asterisk_rtp_port_end']}"
    assert rtp in {str(p) for p in inventory["speaqr_base_firewall_udp_ports"]}, (
        f"the RTP range {rtp} is not among the firewall's UDP ports"
    )
