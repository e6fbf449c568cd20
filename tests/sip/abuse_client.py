"""Abusive SIP-over-TLS traffic for tests/sip/test_abuse.py, run on a client host of its own:
many idle TLS connections, an oversized SIP message, a flood of OPTIONS. Prints one JSON object.

    python -m tests.sip.abuse_client idle --server ADDR --domain D --ca CA --count 200 --hold 5
    python -m tests.sip.abuse_client big --server ADDR --domain D --ca CA --size 65536
    python -m tests.sip.abuse_client options --server ADDR --domain D --ca CA --count 500
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ", re.MULTILINE)


def tls_connect(server: str, domain: str, ca: str, timeout: float = 10.0) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((server, 5061), timeout=timeout)
    return context.wrap_socket(raw, server_hostname=domain)


def options_request(domain: str, local: tuple[str, int], cseq: int, extra_header: str = "") -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    call_id = secrets.token_hex(12)
    lines = [
        f"OPTIONS sip:{domain} SIP/2.0",
        f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:abuse@{domain}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{domain}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        "Content-Length: 0",
    ]
    if extra_header:
        lines.insert(-1, extra_header)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_statuses(sock: ssl.SSLSocket, wanted: int, timeout: float) -> tuple[list[int], bool]:
    """Status codes of up to ``wanted`` responses; and whether the server closed the connection."""
    sock.settimeout(0.5)
    data = b""
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline and len(STATUS_RE.findall(data)) < wanted:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ssl.SSLError, OSError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    return [int(s) for s in STATUS_RE.findall(data)], closed


def idle(args: argparse.Namespace) -> dict:
    def one(_: int) -> ssl.SSLSocket | None:
        # The appliance drops new connections past its per-source rate: retry for a while.
        deadline = time.monotonic() + 45.0
        while time.monotonic() < deadline:
            try:
                return tls_connect(args.server, args.domain, args.ca)
            except OSError:
                time.sleep(0.5)
        return None

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        sockets = list(pool.map(one, range(args.count)))
    opened = [s for s in sockets if s is not None]
    elapsed = time.monotonic() - started
    if args.ready_file:
        with open(args.ready_file, "w") as ready:
            json.dump({"opened": len(opened)}, ready)
    time.sleep(args.hold)
    alive = 0
    for s in opened:
        s.settimeout(0.01)
        try:
            alive += s.recv(1) != b""
        except TimeoutError:
            alive += 1
        except (ssl.SSLError, OSError):
            pass
        s.close()
    return {"requested": args.count, "opened": len(opened), "open_s": round(elapsed, 2), "alive_after_hold": alive}


def big(args: argparse.Namespace) -> dict:
    with tls_connect(args.server, args.domain, args.ca) as sock:
        local = sock.getsockname()[:2]
        filler = "X-Filler: " + "a" * max(0, args.size - 400)
        message = options_request(args.domain, local, 1, filler)
        sent = 0
        try:
            sock.sendall(message)
            sent = len(message)
        except (ssl.SSLError, OSError):
            pass
        statuses, closed = read_statuses(sock, 1, 5.0)
    return {"size": len(message), "sent": sent, "statuses": statuses, "closed": closed}


def options(args: argparse.Namespace) -> dict:
    with tls_connect(args.server, args.domain, args.ca) as sock:
        local = sock.getsockname()[:2]
        started = time.monotonic()
        with contextlib.suppress(ssl.SSLError, OSError):
            sock.sendall(b"".join(options_request(args.domain, local, i + 1) for i in range(args.count)))
        statuses, closed = read_statuses(sock, args.count, 20.0)
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    elapsed = round(time.monotonic() - started, 2)
    return {"sent": args.count, "answered": len(statuses), "statuses": counts, "closed": closed, "elapsed_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kind", choices=["idle", "big", "options"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--ready-file", help="idle: written once every connection is open")
    args = parser.parse_args()
    print(json.dumps({"idle": idle, "big": big, "options": options}[args.kind](args)))


if __name__ == "__main__":
    main()
