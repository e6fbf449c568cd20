"""Command line of the stand-in carrier: ``python -m tests.carrier --listen ADDR:PORT ...``.

Runs until SIGTERM/SIGINT; the state file (``--state``) says what happened to every INVITE.
pjsip's log and ours go to stderr. Exit status 0 after a clean stop, 2 on bad usage, 1 when
the user agent could not start (port taken, bad address).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from tests.carrier.carrier import MODES, SRTP_MODES, Behaviour, Carrier, Options, Rule

log = logging.getLogger("carrier")

# The carrier's tone: 600 Hz (the callers' test tone is 1 kHz), in bursts with a pattern of its
# own so that it can be told from an echo and located by cross-correlation.
TONE_HZ = 600.0
TONE_PATTERN_S = (0.35, 0.15, 0.25, 0.30, 0.45, 0.20)


def write_tone(path: Path, freq_hz: float = TONE_HZ) -> Path:
    import numpy as np

    from tests.audio import silence, tone_bursts, write_wav

    return write_wav(path, np.concatenate([tone_bursts(freq_hz, TONE_PATTERN_S), silence(0.1)]))


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"want ADDRESS:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _behaviour(text: str) -> Behaviour:
    try:
        return Behaviour.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rule(text: str) -> Rule:
    try:
        return Rule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tests.carrier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--listen", type=_listen, required=True, metavar="ADDR:PORT", help="where SIP is received")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument(
        "--tls-listen", type=_listen, metavar="ADDR:PORT", help="also receive SIP over TLS here (needs --tls-cert/-key)"
    )
    ap.add_argument("--tls-cert", help="PEM certificate of the TLS listener (the appliance verifies it)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument(
        "--mode",
        type=_behaviour,
        default=Behaviour(),
        metavar="MODE[:ARG]",
        help=f"what every call gets unless a --rule matches: {', '.join(MODES)} "
        "(reject:CODE, default 403; hangup:S answers, then hangs up after S seconds, default 2; "
        "early:S sends 183 with SDP and plays as early media for S seconds, then refuses 404)",
    )
    ap.add_argument(
        "--rule",
        type=_rule,
        action="append",
        default=[],
        metavar="DIGITS=MODE[:ARG]",
        help="numbers ending in DIGITS get MODE (repeatable; first match wins), e.g. 0486=busy",
    )
    ap.add_argument("--play", help="WAV (8 kHz mono 16-bit) played in a loop to every answered call")
    ap.add_argument(
        "--tone-hz",
        type=float,
        default=TONE_HZ,
        help=f"without --play: play bursts of this tone (default {TONE_HZ:g} Hz)",
    )
    ap.add_argument("--record-dir", help="record what each call receives to DIR/call-NNN-<number>.wav")
    ap.add_argument("--state", help="JSON state file, rewritten after every change")
    ap.add_argument("--ring-ms", type=int, default=100, help="180 Ringing this long before 200 OK (default 100)")
    ap.add_argument("--srtp", choices=sorted(SRTP_MODES), default="disabled", help="SDES-SRTP toward the appliance")
    ap.add_argument("--log-level", type=int, default=1, help="pjsip log level on stderr, 0-6 (4+ logs SIP messages)")
    ap.add_argument(
        "--invite",
        metavar="URI",
        help="instead of waiting for calls: send ONE INVITE to URI from --listen (as the carrier would), "
        "print its outcome as JSON on stdout and exit",
    )
    ap.add_argument("--header", action="append", default=[], metavar="'Name: value'", help="header on --invite")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tls_listen and not (args.tls_cert and args.tls_key):
        parser.error("--tls-listen needs --tls-cert and --tls-key")
    # stdout carries only the --invite result: anything native code prints goes to stderr.
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=logging.INFO if args.log_level >= 2 else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s carrier %(message)s",
    )
    play = args.play
    tmpdir = None
    if play is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="carrier-")
        play = str(write_tone(Path(tmpdir.name) / f"tone-{args.tone_hz:g}.wav", args.tone_hz))
    if args.record_dir:
        Path(args.record_dir).mkdir(parents=True, exist_ok=True)
    opts = Options(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        transport=args.transport,
        default=args.mode,
        rules=args.rule,
        play=play,
        record_dir=args.record_dir,
        state=args.state,
        ring_ms=args.ring_ms,
        srtp=args.srtp,
        tls=(*args.tls_listen, args.tls_cert, args.tls_key) if args.tls_listen else None,
        log_level=args.log_level,
    )
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    carrier = Carrier(opts)
    code = 0
    try:
        carrier.start()
        if args.invite:
            headers = []
            for h in args.header:
                name, sep, value = h.partition(":")
                if not sep:
                    raise SystemExit(f"bad --header {h!r}: want 'Name: value'")
                headers.append((name.strip(), value.strip()))
            result = carrier.invite(args.invite, headers)
            os.write(result_fd, (json.dumps(result) + "\n").encode())
        else:
            carrier.run(lambda: stop["signal"] is not None)
            log.warning("stopping (%s)", stop["signal"])
    except Exception:  # noqa: BLE001 - reported, then a clean stop
        traceback.print_exc()
        code = 1
    finally:
        carrier.stop()
        if tmpdir is not None:
            tmpdir.cleanup()
    return code
