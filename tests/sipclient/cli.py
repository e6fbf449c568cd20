"""Command line of the test SIP client: ``python -m tests.sipclient SUBCOMMAND ...``.

Prints exactly ONE JSON object on stdout; pjsip's log and our own go to
stderr.  The exit status is 0 whenever a result was produced (a refused
registration or call is a result, judged by the caller), 2 for bad usage and
1 for an internal error (the JSON then carries "error").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.sipclient.client import CallPlan, Options, Session, now_ms, wav_seconds

log = logging.getLogger("sipclient")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="address[:port] to contact over TLS (port 5061 by default)")
    p.add_argument("--domain", required=True, help="SIP domain (identity, registrar, request URIs)")
    p.add_argument("--user", required=True)
    p.add_argument(
        "--password",
        default=os.environ.get("SIPCLIENT_PASSWORD"),
        help="password (or env SIPCLIENT_PASSWORD, which keeps it out of ps)",
    )
    p.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="NAME=ADDR",
        help="make NAME resolve to ADDR for this process only (like curl --resolve), so "
        "--server can be the name on the certificate; needs root (private mount "
        "namespace with its own /etc/hosts)",
    )
    p.add_argument("--ca", help="CA file to verify the server certificate against")
    p.add_argument(
        "--no-verify-server", dest="verify_server", action="store_false", help="accept any server certificate"
    )
    p.add_argument(
        "--no-tcp-nodelay",
        dest="tcp_nodelay",
        action="store_false",
        help="leave Nagle's algorithm on (only to measure what TCP_NODELAY saves)",
    )
    p.add_argument(
        "--stun",
        metavar="HOST:PORT",
        help="STUN server: the media address in the SDP offer is the one it reports (a softphone behind NAT)",
    )
    p.add_argument(
        "--media-address",
        metavar="ADDR",
        help="advertise ADDR as the media address in the SDP offer whatever the real one is (a broken NAT "
        "or ALG); the appliance must send its audio where the client's packets come from",
    )
    p.add_argument(
        "--reg-expires",
        type=int,
        default=300,
        metavar="S",
        help="registration lifetime to ask for (the client refreshes it before it ends; the appliance allows >= 60)",
    )
    p.add_argument(
        "--log-level",
        type=int,
        default=int(os.environ.get("SIPCLIENT_LOG_LEVEL", "1")),
        help="pjsip log level on stderr, 0-6 (4+ logs SIP messages)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tests.sipclient", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("register", help="REGISTER over TLS and report the outcome")
    _common(r)

    c = sub.add_parser("call", help="place call(s), play a WAV, record what comes back")
    _common(c)
    c.add_argument("--to", required=True, help="extension (sip:EXT@DOMAIN) or a full sip: URI")
    c.add_argument(
        "--header", action="append", default=[], metavar="'Name: value'", help="extra header on the INVITE (repeatable)"
    )
    c.add_argument(
        "--srtp",
        choices=["mandatory", "optional", "disabled"],
        default="mandatory",
        help="mandatory: RTP/SAVP+crypto; optional: RTP/AVP+crypto; disabled: plain RTP",
    )
    c.add_argument("--codec", default="PCMU", help="the only codec offered (PCMU, PCMA, ...)")
    c.add_argument("--play", help="WAV (8 kHz mono 16-bit) sent into the call once answered")
    c.add_argument("--loop-play", action="store_true", help="repeat --play until the call ends")
    c.add_argument("--record", help="WAV recording of the audio received (index inserted when --concurrent > 1)")
    c.add_argument("--duration", type=float, help="seconds to stay connected (default: play length + tail)")
    c.add_argument("--tail", type=float, default=1.0, help="seconds kept after the played file (default 1)")
    c.add_argument(
        "--concurrent", type=int, default=1, choices=[1, 2, 3, 4], help="simultaneous calls in this process (max 4)"
    )
    c.add_argument(
        "--register", dest="register", action="store_true", default=True, help="REGISTER before calling (default)"
    )
    c.add_argument("--no-register", dest="register", action="store_false", help="call without registering first")
    c.add_argument("--setup-timeout", type=float, default=15.0)
    c.add_argument(
        "--until-signal",
        action="store_true",
        help="hold the call until SIGTERM/SIGUSR1/SIGINT (or --until-file appears)",
    )
    c.add_argument("--until-file", help="with --until-signal: also stop when this file exists")
    c.add_argument("--ready-file", help="written (JSON) once every call is connected or has failed")
    c.add_argument("--max-hold", type=float, default=900.0, help="upper bound for --until-signal")
    return ap


def _parse_headers(raw: list[str]) -> list[tuple[str, str]]:
    out = []
    for h in raw:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"bad --header {h!r}: want 'Name: value'")
        out.append((name.strip(), value.strip()))
    return out


def _options(a) -> Options:
    if a.password is None:
        raise SystemExit("--password (or SIPCLIENT_PASSWORD) is required")
    return Options(
        server=a.server,
        domain=a.domain,
        user=a.user,
        password=a.password,
        ca=a.ca,
        verify_server=a.verify_server,
        log_level=a.log_level,
        tcp_nodelay=a.tcp_nodelay,
        stun=a.stun,
        media_address=a.media_address,
        reg_expires_s=a.reg_expires,
        srtp=getattr(a, "srtp", "mandatory"),
        codec=getattr(a, "codec", "PCMU"),
    )


def do_register(a) -> dict:
    s = Session(_options(a))
    try:
        s.start()
        res = s.register()
        res["tcp_nodelay"] = s.nodelay
        res["transport"] = s.ep.transport_events
        return res
    finally:
        s.stop()


class _StopFlag:
    def __init__(self):
        self.signal: str | None = None
        self.t_ms: float | None = None

    def __call__(self, signum, frame):  # signal handler
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            self.t_ms = now_ms()


def do_call(a) -> dict:
    plan = CallPlan(
        to=a.to,
        headers=_parse_headers(a.header),
        play=a.play,
        record=a.record,
        duration_s=a.duration,
        tail_s=a.tail,
        concurrent=a.concurrent,
        register=a.register,
        setup_timeout_s=a.setup_timeout,
        until_signal=a.until_signal,
        until_file=a.until_file,
        ready_file=a.ready_file,
        max_hold_s=a.max_hold,
    )
    play_s = wav_seconds(plan.play) if plan.play else 0.0
    stop = _StopFlag()
    if plan.until_signal:
        for sig in STOP_SIGNALS:
            signal.signal(sig, stop)

    s = Session(_options(a))
    out: dict = {}
    try:
        s.start()
        if plan.register:
            out["register"] = s.register()
            if not out["register"]["ok"]:
                out.update(status=None, reason="registration failed", connected=False, calls=[])
                return out
        else:
            s.create_account(register=False)
        out["tcp_nodelay"] = s.nodelay
        calls = s.place_calls(
            plan.to, plan.concurrent, plan.headers, plan.play, plan.record, loop_play=a.loop_play or plan.until_signal
        )

        def settled():
            return all(c.disconnected or c.t_media is not None for c in calls)

        s.wait_for(settled, plan.setup_timeout_s)
        if plan.ready_file:
            _write_json(
                plan.ready_file,
                {
                    "connected": [c.connected and not c.disconnected for c in calls],
                    "call_ids": [c.call_id for c in calls],
                },
            )

        last_sample = 0.0
        if plan.until_signal:
            deadline = time.monotonic() + plan.max_hold_s
            while stop.signal is None and time.monotonic() < deadline:
                if plan.until_file and Path(plan.until_file).exists():
                    stop.signal, stop.t_ms = "until-file", now_ms()
                    break
                if all(c.disconnected for c in calls):
                    break
                s.poll(20)
                if time.monotonic() - last_sample >= 0.1:
                    last_sample = time.monotonic()
                    for c in calls:
                        c.sample_rtp()
            at_stop = []
            for c in calls:
                c.sample_rtp()
                rx = c.rx_packets_during(1000.0)
                at_stop.append(
                    {
                        "connected": c.connected and not c.disconnected,
                        "rx_packets_last_second": rx,
                        "rtp_flowing": rx is not None and rx >= 25,  # 20 ms ptime: ~50 packets/s
                        "held_s": round((now_ms() - c.t_confirmed) / 1000.0, 3) if c.t_confirmed else None,
                    }
                )
            out["stopped_by"] = stop.signal or ("all calls ended" if all(c.disconnected for c in calls) else "max-hold")
            out["at_stop"] = at_stop
        else:
            hold_s = plan.duration_s if plan.duration_s is not None else (play_s + plan.tail_s if plan.play else 2.0)
            t0 = time.monotonic()
            while time.monotonic() - t0 < hold_s and not all(c.disconnected for c in calls):
                s.poll(20)
                if time.monotonic() - last_sample >= 0.2:
                    last_sample = time.monotonic()
                    for c in calls:
                        c.sample_rtp()
        s.hangup_all()
        results = [c.result() for c in calls]
        if plan.concurrent == 1:
            out.update(results[0])
            if plan.until_signal:
                out["at_stop"] = out["at_stop"][0]
        else:
            out["calls"] = results
            out["connected"] = all(r["connected"] for r in results)
        out["play_s"] = round(play_s, 3) if plan.play else None
        out["registrations_ok"] = s.acc.registrations_ok if plan.register else 0
        return out
    finally:
        s.stop()


def _write_json(path: str, obj: dict) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def pin_hosts(pairs: list[str]) -> None:
    """Give this process a private /etc/hosts with NAME ADDR lines added.

    The process moves into its own mount namespace (``unshare(CLONE_NEWNS)``,
    propagation private) and bind-mounts a copy of /etc/hosts with the extra
    lines over /etc/hosts: nothing outside this process sees it.  pjsip has no
    DNS resolver configured here, so it resolves through getaddrinfo, i.e.
    through this file.  Must run before any thread is started.
    """
    lines = []
    for pair in pairs:
        name, sep, addr = pair.partition("=")
        if not sep or not name or not addr:
            raise SystemExit(f"bad --resolve {pair!r}: want NAME=ADDR")
        lines.append(f"{addr.strip('[]')}\t{name}\n")
    base = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
    fd, tmp = tempfile.mkstemp(prefix="sipclient-hosts-")
    with os.fdopen(fd, "w") as f:
        f.write("".join(lines) + base)
    os.chmod(tmp, 0o644)
    os.unshare(os.CLONE_NEWNS)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True, capture_output=True)
    subprocess.run(["mount", "--bind", tmp, "/etc/hosts"], check=True, capture_output=True)
    os.unlink(tmp)  # the bind mount keeps the inode


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resolve:
        try:
            pin_hosts(args.resolve)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            print(
                json.dumps(
                    {
                        "ok": False,
                        "error": f"--resolve failed (needs root): {exc} {detail.decode(errors='replace').strip()}",
                    }
                )
            )
            return 1
    # stdout carries only the JSON result: anything native code prints goes to stderr.
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=logging.INFO if args.log_level >= 3 else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s sipclient %(message)s",
    )
    code = 0
    try:
        result = do_register(args) if args.cmd == "register" else do_call(args)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as JSON
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        code = 1
    with os.fdopen(result_fd, "w") as f:
        f.write(json.dumps(result, default=str) + "\n")
    return code
