"""Unit tests of the stand-in carrier's pure parts (INVITE parsing, behaviour rules) and of the
call tests' number and envelope helpers. No SIP traffic: the carrier itself is exercised by
tests/sip/test_call_*.py against a provisioned target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pjsua2")

from tests.carrier.carrier import Behaviour, Options, Rule, header_value, parse_invite, uri_user  # noqa: E402
from tests.sip.call_harness import number  # noqa: E402

INVITE = (
    "INVITE sip:+34911234567@10.0.2.100:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.2.100:5080;rport;branch=z9hG4bKPj1\r\n"
    'From: "alice" <sip:+34910000000@10.0.2.100>;tag=abc\r\n'
    "To: <sip:+34911234567@10.0.2.100>\r\n"
    "Call-ID: 0434d799-8109\r\n"
    "CSeq: 1 INVITE\r\n"
    "P-Asserted-Identity: <sip:+34910000000@10.0.2.100>\r\n"
    "User-Agent: Speaqr SIP\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\nm=audio 10000 RTP/AVP 0\r\nP-Asserted-Identity: <sip:evil@x>\r\n"
)


def test_parse_invite_reads_number_caller_id_and_call_id():
    info = parse_invite(INVITE)
    assert info["number"] == "+34911234567"
    assert info["request_uri"] == "sip:+34911234567@10.0.2.100:5070"
    assert info["from_user"] == "+34910000000"
    assert info["pai_user"] == "+34910000000"
    assert info["call_id"] == "0434d799-8109"
    assert info["user_agent"] == "Speaqr SIP"
    assert info["sdp_crypto"] is False


def test_headers_are_read_from_the_header_block_only_and_compact_forms_count():
    msg = "INVITE sip:1@h SIP/2.0\r\nf: <sip:bob@h>;tag=1\r\ni: x@y\r\n\r\nFrom: <sip:body@h>\r\n"
    assert header_value(msg, "From", "f") == "<sip:bob@h>;tag=1"
    assert header_value(msg, "Call-ID", "i") == "x@y"
    assert header_value(msg, "P-Asserted-Identity") is None


@pytest.mark.parametrize(
    ("value", "user"),
    [
        ('"A" <sip:+34911@h>;tag=x', "+34911"),
        ("<sips:0034911@h:5061;transport=tls>", "0034911"),
        ("sip:alice@sip.example.com", "alice"),
        ("<sip:h.example.com>", None),
        (None, None),
    ],
)
def test_uri_user(value, user):
    assert uri_user(value) == user


def test_rules_pick_the_behaviour_by_the_last_digits():
    opts = Options("127.0.0.1", 5070, rules=[Rule.parse("0486=busy"), Rule.parse("0403=reject:603")])
    assert opts.behaviour_for("+34911230486") == Behaviour("busy")
    assert opts.behaviour_for("0034911230403") == Behaviour("reject", "603")
    assert opts.behaviour_for("+34911234567") == Behaviour("answer")


@pytest.mark.parametrize("bad", ["x=busy", "0486", "0486=ring", "0403=reject:99", "0555=hangup:-1", "0555=hangup:x"])
def test_bad_rules_are_refused(bad):
    with pytest.raises(ValueError):
        Rule.parse(bad)


@pytest.mark.parametrize(("prefix", "suffix"), [("+34", ""), ("+44", "0486"), ("+1", "0777"), ("+81", "")])
def test_test_numbers_are_e164_with_the_prefix_and_suffix(prefix, suffix):
    n = number(prefix, suffix)
    assert n.startswith(prefix) and n.endswith(suffix)
    assert len(n) == 12 and n[1:].isdigit()


def _bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "call_service.py"
    spec = importlib.util.spec_from_file_location("call_service_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_envelope_delay_finds_a_shifted_copy_whatever_its_frequency():
    from tests.audio import silence, tone_bursts

    bench = _bench()
    sent = np.concatenate([tone_bursts(1000.0), silence(0.2)])
    # The same bursts at 1600 Hz (the stand-in Speaqr shifted them twice), 123 ms later.
    back = np.concatenate([silence(0.123), tone_bursts(1600.0), silence(0.5)])
    lag, peak = bench.envelope_delay_ms(sent, back)
    assert lag == pytest.approx(123, abs=2)
    assert peak > 0.9
