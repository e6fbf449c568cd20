"""Read the output of Asterisk CLI commands (``asterisk -rx``) into plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY_VALUE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s+:\s(.*)$")


def key_values(text: str) -> dict[str, str]:
    """``name : value`` lines (``pjsip show endpoint|transport|settings``); the first one wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _KEY_VALUE.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).strip()
    return out


def not_found(text: str) -> bool:
    """Asterisk's answer when the named PJSIP object does not exist."""
    return bool(re.search(r"Unable to find object|No objects found", text))


@dataclass(frozen=True)
class Contact:
    uri: str
    status: str  # Avail, NonQual, Unavail, Unknown


def aor_contacts(text: str) -> list[Contact]:
    """Contacts of ``pjsip show aor <name>`` (``Contact: <aor>/<uri> <hash> <status> <rtt>``)."""
    out = []
    for m in re.finditer(r"^\s*Contact:\s+\S+?/(sip:\S+)\s+\S+\s+(\w+)", text, re.M):
        out.append(Contact(uri=m.group(1), status=m.group(2)))
    return out


def registration_states(text: str) -> dict[str, str]:
    """Outbound registration name -> status of ``pjsip show registrations``."""
    out = {}
    for m in re.finditer(r"^\s*([A-Za-z0-9_.-]+)/sip:\S+\s+\S+\s+(\w+)", text, re.M):
        out[m.group(1)] = m.group(2)
    return out


def transports(text: str) -> dict[str, tuple[str, str]]:
    """Transport name -> (protocol, bind address:port) of ``pjsip show transports``."""
    out = {}
    for m in re.finditer(r"^Transport:\s+(\S+)\s+(\w+)\s+\d+\s+\d+\s+(\S+)", text, re.M):
        out[m.group(1)] = (m.group(2).lower(), m.group(3))
    return out


def rtp_port_range(text: str) -> tuple[int, int] | None:
    start = re.search(r"Port start:\s+(\d+)", text)
    end = re.search(r"Port end:\s+(\d+)", text)
    return (int(start.group(1)), int(end.group(1))) if start and end else None


def ari_apps(text: str) -> set[str]:
    """Applications of ``ari show apps`` (one name per line under a ``====`` rule)."""
    lines = text.splitlines()
    names = set()
    seen_rule = False
    for line in lines:
        if line.startswith("==="):
            seen_rule = True
            continue
        if seen_rule and line.strip():
            names.add(line.strip())
    return names


def codecs(allow: str) -> set[str]:
    """``allow : (ulaw|alaw)`` of ``pjsip show endpoint`` -> {"ulaw", "alaw"}."""
    return {c for c in re.split(r"[|,() ]+", allow) if c}
