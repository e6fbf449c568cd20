"""Clients on hosts of their own, behind NAT with and without STUN, against the appliance as the
lab puts it on the network (scripts/target/common.sh): the nspawn machine behind 1:1 NAT (only
private addresses on its interfaces, public 198.51.100.2), the VM with its address routed.

Each client kind makes a loopback call whose audio is judged by analysis, and the test checks
what a softphone behind that network sees: the SDP answer names only the appliance's public
address, the audio arrives from it, and the appliance registered the client's public source as
its contact (contact rewriting) and sent its audio there (symmetric RTP latching), whatever the
client advertised. Clients inside the appliance's local networks get its private address.

Needs the lab topology (SPEAQR_TARGET_NETNS and its hosts); skipped elsewhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from tests.audio import RATE, active_segment, compare, dominant_frequency, is_silent, read_wav
from tests.sip.call_fixtures import Caller
from tests.sip.call_harness import CARRIER_TONE_HZ
from tests.sip.harness import ROOT, TONE_HZ, SipClient
from tests.sip.loopback import as_root

NAT_PUBLIC_ADDRESS = "198.51.100.20"  # the masquerading NAT router's public leg
NAT_PRIVATE_ADDRESS = "192.168.100.10"
STUN_SERVER = "198.51.100.30:3478"
# Documentation address (TEST-NET-3) nobody routes: what a broken NAT/ALG might write into SDP.
BOGUS_MEDIA_ADDRESS = "203.0.113.77"
MATCH_PEAK = 0.9
MATCH_FRACTION = 0.8
# Ports the appliance does not open to the internet (SIP over UDP/TCP, ARI/HTTP, MariaDB, the ARI
# application's metrics): a client host's packets to them are dropped, so a connection times out
# instead of being refused.
CLOSED_TCP_PORTS = (5060, 8088, 3306, 9102)
CLOSED_UDP_PORTS = (5060, 4569)
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ClientKind:
    name: str
    host: str  # lab host (namespace suffix)
    extra: tuple[str, ...]
    offers: str  # the media address the client's own SDP offer names
    public_source: str  # the address the appliance sees the client's packets come from


# Client host 3 is the never-banned host of the lab inventories: the ban suite cannot leave it banned.
PUBLIC_HOST = "198.51.100.13"
KINDS = [
    ClientKind("public host", "client3", (), PUBLIC_HOST, PUBLIC_HOST),
    ClientKind("behind NAT, no STUN", "natclient", (), NAT_PRIVATE_ADDRESS, NAT_PUBLIC_ADDRESS),
    ClientKind("behind NAT, with STUN", "natclient", ("--stun", STUN_SERVER), NAT_PUBLIC_ADDRESS, NAT_PUBLIC_ADDRESS),
    ClientKind(
        "advertising a wrong media address",
        "client3",
        ("--media-address", BOGUS_MEDIA_ADDRESS),
        BOGUS_MEDIA_ADDRESS,
        PUBLIC_HOST,
    ),
]


def _contacts(host, user: str) -> list[str]:
    """The contact URIs Asterisk holds for ``user`` (``pjsip show contacts``)."""
    with as_root(host):
        out = host.check_output("asterisk -rx %s", f"pjsip show aor {user}")
    return re.findall(r"Contact:\s+" + re.escape(user) + r"/(sip:\S+)", out)


def _host_of(uri: str) -> str:
    m = re.match(r"sips?:[^@]+@\[?([^\]:;>]+)", uri)
    return m.group(1) if m else ""


def _judge_tone(sent_wav, received_wav) -> dict:
    sent, _ = read_wav(sent_wav)
    received, rate = read_wav(received_wav)
    assert rate == RATE
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    assert not is_silent(received), f"no audio came back: {c}"
    assert dominant_frequency(received, RATE) == pytest.approx(TONE_HZ, abs=10), c
    assert c["segments"]["matched_fraction"] >= MATCH_FRACTION, f"the tone did not come back intact: {c}"
    return c


@pytest.fixture(scope="module")
def public_segment(sip_target) -> dict[str, SipClient]:
    """A client on each lab host the kinds use, contacting the appliance's public address."""
    return {k.host: SipClient(sip_target.from_lab_host(sip_target.lab_host(k.host))) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_loopback_audio_both_ways_with_only_public_addresses(
    kind, public_segment, sip_target, alice, audio_files, host, tmp_path, sip_metrics
):
    client = public_segment[kind.host]
    public = sip_target.public_address
    rec = tmp_path / "received.wav"
    held = client.hold(
        alice, "loopback", "--play", str(audio_files["tone"]), "--record", str(rec), *kind.extra, workdir=tmp_path
    )
    try:
        contacts = _contacts(host, alice)
        time.sleep(2.5)  # the tone (1.45 s) has been played and its echo received
    finally:
        r = held.stop()
    assert r.get("status") == 200 and r.get("connected"), r
    assert (r["offer"] or {}).get("connection") == [kind.offers], f"the client's offer: {r['offer']}"
    media = r["media"] or {}
    assert media.get("profile") == "RTP/SAVP", media
    assert media.get("origin") == public and media.get("connection") == [public], (
        f"the SDP answer must name only the public address {public}: {media}"
    )
    rtp = r["rtp"]
    assert rtp.get("source", "").split(":")[0] == public, f"the audio did not come from {public}: {rtp}"
    hosts = {_host_of(u) for u in contacts}
    assert kind.public_source in hosts, f"contact not rewritten to the client's source {kind.public_source}: {contacts}"
    assert NAT_PRIVATE_ADDRESS not in hosts, contacts
    c = _judge_tone(audio_files["tone"], rec)
    sip_metrics.append(
        {
            "test": f"real networks loopback, {kind.name}",
            "invite_to_200_ms": r["invite_to_200_ms"],
            "round_trip_ms": round(c["delay"]["lag_ms"], 1),
        }
    )


def test_a_client_inside_the_local_networks_gets_the_private_address(sip, sip_target, alice):
    r = sip.call(alice, "loopback", "--duration", "1")
    assert r.get("status") == 200 and r.get("connected"), r
    media = r["media"] or {}
    assert media.get("connection") == [sip_target.address] and media.get("origin") == sip_target.address, (
        f"a client in speaqr_asterisk_local_nets must get the private address {sip_target.address}: {media}"
    )


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_call_service_from_each_client_kind_has_audio_both_ways_and_the_carriers_hangup_arrives(
    kind, public_segment, carrier, passthrough_user, call_settings, caller_tone, tmp_path
):
    """``call`` from each client host: the carrier hears the caller's 1 kHz tone and the caller
    the carrier's 600 Hz; then the carrier hangs up and the appliance's BYE reaches the client
    (through its NAT, where it has one: it stayed reachable on its registered, rewritten
    contact)."""
    destination = call_settings.allowed_number("0555")  # answers, hangs up after 2 s
    mark = carrier.mark()
    rec = tmp_path / "caller-received.wav"
    caller = Caller(public_segment[kind.host])
    r = caller.dial(
        passthrough_user, destination, "--play", str(caller_tone), "--record", str(rec), "--duration", "10", *kind.extra
    )
    assert r.get("status") == 200 and r["connected"], r
    assert r["ended_by"] == "remote" and r["duration_s"] < 6, f"the carrier's hangup did not reach the client: {r}"
    c = carrier.call_for(destination, mark)
    assert c["hung_up_by"] == "carrier" and c["record"], c
    at_caller, _ = read_wav(rec)
    at_carrier, _ = read_wav(c["record"])
    for who, x, freq in (("the caller", at_caller, CARRIER_TONE_HZ), ("the carrier", at_carrier, TONE_HZ)):
        assert not is_silent(x), f"{who} heard nothing"
        assert dominant_frequency(active_segment(x, RATE), RATE) == pytest.approx(freq, abs=15), who


# A NAT that forgets an idle TCP connection after this long (seconds), as aggressive home
# routers and carrier-grade NATs do; the appliance's keep-alives (speaqr_asterisk_keep_alive_interval)
# must come more often.
NAT_IDLE_TIMEOUT_S = 45


@pytest.fixture
def forgetful_nat(sip_target):
    """The lab's NAT router forgets TCP connections idle for NAT_IDLE_TIMEOUT_S and does not take
    back one it forgot (a packet of it is then invalid: it leaves un-translated or not at all)."""
    netns = sip_target.lab_host("nat")
    settings = {
        "net.netfilter.nf_conntrack_tcp_timeout_established": str(NAT_IDLE_TIMEOUT_S),
        "net.netfilter.nf_conntrack_tcp_loose": "0",
    }

    def sysctl(*args: str) -> str:
        cmd = ["ip", "netns", "exec", netns, "sysctl", "-n", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    before = {key: sysctl(key) for key in settings}
    for key, value in settings.items():
        sysctl("-w", f"{key}={value}")
    try:
        yield NAT_IDLE_TIMEOUT_S
    finally:
        for key, value in before.items():
            sysctl("-w", f"{key}={value}")


@pytest.fixture(scope="module")
def running_keep_alive(target) -> int:
    """The keep-alive interval of the running Asterisk (PJSIP keep_alive_interval)."""
    shown = target.check_output("asterisk -rx 'pjsip show settings'")
    found = re.search(r"^\s*keep_alive_interval\s*:\s*(\d+)", shown, re.M)
    assert found, shown
    return int(found.group(1))


def test_a_natted_client_idle_longer_than_its_nat_remembers_stays_registered_and_reachable(
    forgetful_nat, public_segment, carrier, passthrough_user, call_settings, running_keep_alive
):
    """The call's signalling connection (TLS through the NAT) stays idle while the audio flows;
    the carrier hangs up after 60 s, longer than the NAT remembers an idle connection. The BYE
    reaches the client only because the appliance's keep-alives kept the NAT's mapping alive
    (with Asterisk's default of 90 s it does not: the client hangs up itself after 90 s). The
    client registered for 60 s, so its refresh crossed the same NAT mid-call and was accepted."""
    assert 0 < running_keep_alive < forgetful_nat, (
        f"speaqr_asterisk_keep_alive_interval {running_keep_alive} s does not beat a NAT that forgets "
        f"after {forgetful_nat} s"
    )
    destination = call_settings.allowed_number("0560")  # answers, hangs up after 60 s
    mark = carrier.mark()
    r = Caller(public_segment["natclient"]).dial(
        passthrough_user, destination, "--duration", "90", "--reg-expires", "60"
    )
    assert r.get("status") == 200 and r["connected"], r
    assert r["ended_by"] == "remote" and r["duration_s"] < 70, f"the carrier's hangup did not reach the client: {r}"
    assert r["registrations_ok"] >= 2, f"the registration was not refreshed through the NAT: {r}"
    assert carrier.call_for(destination, mark)["hung_up_by"] == "carrier"


def _probe(netns: str, address: str, proto: str, port: int) -> str:
    """Run a connect probe from a lab host: 'open', 'refused' or 'timeout'."""
    code = (
        "import socket,sys\n"
        "proto,addr,port,t=sys.argv[1],sys.argv[2],int(sys.argv[3]),float(sys.argv[4])\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_STREAM if proto=='tcp' else socket.SOCK_DGRAM)\n"
        "s.settimeout(t)\n"
        "try:\n"
        "    s.connect((addr,port))\n"
        "    if proto=='udp':\n"
        "        s.send(b'OPTIONS sip:probe SIP/2.0\\r\\n\\r\\n'); s.recv(2048)\n"
        "    print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except (TimeoutError, socket.timeout): print('timeout')\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, proto, address, str(port), str(PROBE_TIMEOUT_S)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def test_firewall_from_a_client_host_opens_only_sip_over_tls(sip_target):
    netns = sip_target.lab_host("client3")
    address = sip_target.public_address
    got = {"tcp/5061": _probe(netns, address, "tcp", 5061)}
    got |= {f"tcp/{p}": _probe(netns, address, "tcp", p) for p in CLOSED_TCP_PORTS}
    got |= {f"udp/{p}": _probe(netns, address, "udp", p) for p in CLOSED_UDP_PORTS}
    want = {k: "open" if k == "tcp/5061" else "timeout" for k in got}
    assert got == want, f"from {netns} to {address}: {got}"
