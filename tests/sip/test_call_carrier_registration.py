"""A carrier trunk with outbound registration (``auth: registration``): the appliance registers
to the carrier's registrar with the trunk's credentials, over the trunk's transport (TLS, the
registrar's certificate verified), with a contact where the carrier can reach it (its public
address and SIP port, through its firewall and NAT), and answers the carrier's digest challenge
on each INVITE; a registrar that refuses the credentials leaves the registration rejected, as
Asterisk reports it.

The carrier's registrar is the lab carrier's edge (Kamailio, tests/sip/carrier_edge.py) on the
carrier's host, in front of the stand-in carrier. The lab's registering trunk is the one the
``call`` service dials, so test_call_audio.py judges the audio of calls over it (TLS, SRTP) and
the last test here shows each INVITE was challenged and authenticated.
"""

from __future__ import annotations

import pytest

from tests.sip.call_fixtures import carrier_tls_files
from tests.sip.call_harness import appliance_address_for_carrier, carrier_netns, carrier_transport
from tests.sip.carrier_edge import CarrierEdge, registration_trunk


@pytest.fixture(scope="module")
def trunk(call_settings):
    found = registration_trunk(call_settings.carriers)
    if found is None:
        pytest.skip("no carrier with auth: registration in this inventory")
    return found


@pytest.fixture(scope="module")
def edge_tls_files(trunk, call_settings, target, carrier_certificate_dir):
    """The edge's certificate for a TLS trunk (issued by the lab CA, for the carrier's address)."""
    if carrier_transport(trunk) != "tls":
        return None
    if trunk["name"] != call_settings.trunk.get("name"):
        pytest.skip("a TLS trunk that registers and is not the dialled one: no certificate for its edge")
    return carrier_tls_files(call_settings, target, carrier_certificate_dir)


def _edge(trunk, call_settings, tls_files, workdir, password=None) -> CarrierEdge:
    standin = f"{call_settings.carrier_host}:{call_settings.carrier_port}"
    return CarrierEdge(
        trunk, call_settings.carrier_host, standin, workdir, carrier_netns(), password, tls_files
    ).start()


def _sip_port(trunk, sip_target) -> int:
    """Where the appliance takes the trunk's requests: its TLS port, or the trunk's own port."""
    return sip_target.port if carrier_transport(trunk) == "tls" else int(trunk["local_port"])


def test_the_appliance_registers_where_the_carrier_can_reach_it(
    trunk, edge_tls_files, call_settings, target, sip_target, tmp_path
):
    edge = _edge(trunk, call_settings, edge_tls_files, tmp_path / "edge")
    try:
        target.register_now(trunk["name"], "Registered")
        accepted = edge.wait_event("accepted REGISTER")
    finally:
        edge.stop()
    appliance = appliance_address_for_carrier(sip_target)
    assert accepted.fields["user"] == trunk["username"], accepted
    assert accepted.fields["proto"] == carrier_transport(trunk), accepted
    # The contact the carrier will send calls to is the appliance's public address and SIP port,
    # and the REGISTER came from that address.
    assert f"@{appliance}:{_sip_port(trunk, sip_target)}" in accepted.fields["contact"], accepted
    assert accepted.fields["from"].rsplit(":", 1)[0] == appliance, accepted
    assert [e for e in edge.events() if e.what == "refused REGISTER"] == [], edge.events()


def test_a_registrar_that_refuses_the_credentials_leaves_the_registration_rejected(
    trunk, edge_tls_files, call_settings, target, tmp_path
):
    edge = _edge(trunk, call_settings, edge_tls_files, tmp_path / "edge", password="not-the-trunks-password")
    try:
        target.register_now(trunk["name"], "Rejected")
        refused = edge.wait_event("refused REGISTER")
        assert [e for e in edge.events() if e.what == "accepted REGISTER"] == [], edge.events()
    finally:
        edge.stop()
    assert refused.fields["user"] == trunk["username"], refused
    # With the carrier's registrar back to the trunk's credentials, the appliance registers again.
    edge = _edge(trunk, call_settings, edge_tls_files, tmp_path / "edge-again")
    try:
        target.register_now(trunk["name"], "Registered")
    finally:
        edge.stop()


def test_calls_over_the_registered_trunk_answer_the_carriers_challenge(
    trunk, call_settings, caller, carrier, passthrough_user
):
    if call_settings.trunk.get("name") != trunk["name"]:
        pytest.skip(f"the call service dials {call_settings.trunk.get('name')}, not {trunk['name']}")
    destination = call_settings.allowed_number("0105")
    mark = carrier.mark()
    r = caller.dial(passthrough_user, destination, "--duration", "0.5")
    assert r.get("status") == 200 and r["connected"], r
    assert carrier.call_for(destination, mark)["final_status"] == 200
    assert carrier.edge is not None
    accepted = [e for e in carrier.edge.events() if e.what == "accepted INVITE"]
    assert [e.fields["number"] for e in accepted][-1:] == [destination], carrier.edge.events()
    assert accepted[-1].fields["user"] == trunk["username"], accepted[-1]
