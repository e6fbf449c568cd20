"""Call service figures on a provisioned target: post-dial delay and the audio round trip.

* Post-dial delay added by the appliance: the caller's INVITE (the one with credentials) leaves
  the test client -> the appliance's INVITE reaches the stand-in carrier. Both processes run on
  this host and stamp with ``time.perf_counter()`` (CLOCK_MONOTONIC), so it is a subtraction.
  It covers TLS, digest auth, the dialplan, the AGI check (MariaDB), Stasis, the ARI
  application's two processor sessions and the originate over the trunk.
* INVITE -> 200 as the caller sees it (the carrier rings ``--ring-ms`` before answering).
* Audio round trip through both legs: the carrier echoes (number ending 0777), the caller sends
  1 kHz tone bursts and records; caller -> appliance -> carrier -> appliance -> caller, each leg
  through its bridge, externalMedia relay and the processor. Measured two ways on the envelopes
  (the stand-in Speaqr shifts the frequency twice, the envelope stays): the lag of the whole
  sent signal in the recording (where the processor keeps the timing: passthrough), and the
  time until the first sent audio comes back (every processor; the stand-in Speaqr answers per
  200 ms chunk, and its output is not time-aligned with the input).

Run from the repository root as root, with the target's settings (as molecule's verifier has them;
SPEAQR_CARRIER_NETNS=speaqr-<target>-carrier runs the carrier on the lab's carrier host):

    SPEAQR_TARGET_NETNS=speaqr-calldev SPEAQR_SIP_ADDRESS=10.0.2.100 SPEAQR_SIP_DOMAIN=sip.speaqr.lab \\
    SPEAQR_LAB_CA=.lab/speaqr-calldev/lab-ca.crt SPEAQR_SIP_USERS='{"alice": "...", "bob": "..."}' \\
    .venv/bin/python benchmarks/call_service.py --carrier 10.0.2.100:5070 --passthrough-user alice \\
        --speaqr-user bob --calls 10 --label nspawn \\
        [--carrier-tls 5090 --carrier-cert carrier.crt --carrier-key carrier.key]

With the example inventory the service dials the carrier over TLS (lab-carrier): give the TLS port
and a certificate for the carrier's address that the appliance trusts (the lab CA issues one:
tests/sip/call_harness.py ``issue_carrier_certificate``).

Prints a summary and writes benchmarks/results/call_service-<label>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audio import read_wav, silence, tone_bursts, write_wav  # noqa: E402
from tests.sip.call_harness import CallSettings, CarrierProcess, number  # noqa: E402
from tests.sip.harness import TONE_HZ, SipClient, SipTarget  # noqa: E402

logger = logging.getLogger("benchmarks.call_service")
RESULTS = Path(__file__).resolve().parent / "results"


def envelope(x: np.ndarray, step: int = 8, window: int = 32) -> np.ndarray:
    """Rectified signal averaged over 4 ms, one value per 1 ms: follows the tone bursts, not
    their frequency (the stand-in Speaqr shifts it)."""
    smooth = np.convolve(np.abs(np.asarray(x, dtype=float)), np.ones(window) / window, mode="same")
    return smooth[::step]


def envelope_delay_ms(sent: np.ndarray, received: np.ndarray, max_lag_s: float = 2.0) -> tuple[float, float]:
    """Lag (ms) of ``sent``'s envelope inside ``received``'s, and the normalised correlation peak."""
    a, b = envelope(sent), envelope(received)
    max_lag = min(int(max_lag_s * 1000), len(b) - 1)
    best, best_lag = -1.0, 0
    for lag in range(0, max_lag):
        seg = b[lag : lag + len(a)]
        if len(seg) < len(a) // 2:
            break
        ref = a[: len(seg)] - a[: len(seg)].mean()  # Pearson correlation of the overlap
        seg = seg - seg.mean()
        denom = np.linalg.norm(ref) * np.linalg.norm(seg)
        if denom == 0:
            continue
        c = float(np.dot(ref, seg) / denom)
        if c > best:
            best, best_lag = c, lag
    return float(best_lag), best


def first_audio_ms(received: np.ndarray, threshold: float = 0.5) -> float | None:
    """Milliseconds from the start of the recording (= the first sent sample) to the first
    millisecond whose envelope reaches ``threshold`` of its maximum: when the first of the sent
    audio came back, whatever the processor did to its timing."""
    e = envelope(received)
    if e.size == 0 or e.max() <= 0.01:
        return None
    return float(np.argmax(e >= threshold * e.max()))


def summary(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "min": round(min(v), 2),
        "median": round(statistics.median(v), 2),
        "mean": round(statistics.fmean(v), 2),
        "max": round(max(v), 2),
    }


def run_user(sip: SipClient, carrier: CarrierProcess, user: str, calls: int, tone: Path, work: Path) -> dict:
    pdd, i2200, rtt, first, peaks, failures = [], [], [], [], [], []
    sent, _ = read_wav(tone)
    for i in range(calls):
        dest = number("+34", f"{i:02d}0601")
        mark = carrier.mark()
        r = sip.call(user, "call", "--duration", "0.3", headers={"X-Origin": user, "X-Destination": dest})
        if r.get("status") != 200:
            failures.append({"call": i, "kind": "setup", "status": r.get("status"), "reason": r.get("reason")})
            continue
        c = carrier.call_for(dest, mark)
        pdd.append(c["arrived_ms"] - r["invites_sent_at_ms"][-1])
        i2200.append(r["invite_to_200_ms"])
    for i in range(calls):
        dest = number("+34", f"{i:02d}0777")
        rec = work / f"{user}-echo-{i}.wav"
        r = sip.call(
            user,
            "call",
            "--play",
            str(tone),
            "--record",
            str(rec),
            "--tail",
            "3",
            headers={"X-Origin": user, "X-Destination": dest},
        )
        if r.get("status") != 200:
            failures.append({"call": i, "kind": "echo", "status": r.get("status"), "reason": r.get("reason")})
            continue
        received, _ = read_wav(rec)
        onset = first_audio_ms(received)
        if onset is None:
            failures.append({"call": i, "kind": "echo", "detail": "nothing came back"})
            continue
        first.append(onset - first_audio_ms(sent))
        lag, peak = envelope_delay_ms(sent, received, max_lag_s=4.0)
        peaks.append(round(peak, 3))
        if peak >= 0.8:
            rtt.append(lag)
    return {
        "post_dial_delay_ms": summary(pdd),
        "invite_to_200_ms": summary(i2200),
        # Whole-signal correlation: only where the processor keeps the timing (passthrough).
        "round_trip_both_legs_ms": summary(rtt),
        # First sent audio back at the caller: comparable for every processor.
        "first_audio_back_ms": summary(first),
        "echo_envelope_peaks": peaks,
        "failures": failures,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--carrier", required=True, metavar="ADDR:PORT", help="where the stand-in carrier listens")
    ap.add_argument("--carrier-tls", type=int, metavar="PORT", help="the carrier also listens for TLS on PORT")
    ap.add_argument("--carrier-cert", help="its certificate (with --carrier-tls)")
    ap.add_argument("--carrier-key", help="its private key (with --carrier-tls)")
    ap.add_argument("--passthrough-user", required=True)
    ap.add_argument("--speaqr-user", help="a user on the speaqr processor (the lab's stand-in Speaqr)")
    ap.add_argument("--calls", type=int, default=10, help="calls per measurement and user")
    ap.add_argument("--label", default="target")
    ap.add_argument(
        "--client-netns",
        metavar="NETNS",
        help="run the callers in this lab host's namespace, contacting SPEAQR_PUBLIC_ADDRESS "
        "(default: the target's own namespace, a host in its local networks)",
    )
    ap.add_argument(
        "--trunk-settle",
        type=float,
        default=7.0,
        metavar="S",
        help="seconds to wait after starting the carrier for the appliance's OPTIONS qualify (lab: every 5 s)",
    )
    args = ap.parse_args()
    if args.carrier_tls and not (args.carrier_cert and args.carrier_key):
        ap.error("--carrier-tls needs --carrier-cert and --carrier-key")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    env = os.environ
    target = SipTarget(
        address=env["SPEAQR_SIP_ADDRESS"],
        domain=env.get("SPEAQR_SIP_DOMAIN", env["SPEAQR_SIP_ADDRESS"]),
        ca=env["SPEAQR_LAB_CA"],
        users=json.loads(env["SPEAQR_SIP_USERS"]),
        netns=env.get("SPEAQR_TARGET_NETNS", ""),
        public_address=env.get("SPEAQR_PUBLIC_ADDRESS", ""),
    )
    # From a lab host (e.g. speaqr-nspawn-client1) the callers reach the appliance as customers
    # on the internet do: through its public address, firewall and NAT.
    sip = SipClient(target.from_lab_host(args.client_netns) if args.client_netns else target)
    host, _, port = args.carrier.rpartition(":")
    settings = CallSettings(host, int(port), "fixed", "", "e164", 30.0, ["+34"], [], 2, 10)
    tls_files = None
    if args.carrier_tls:
        settings.carrier_tls_port = args.carrier_tls
        tls_files = (Path(args.carrier_cert), Path(args.carrier_key))
    with tempfile.TemporaryDirectory(prefix="call-bench-") as tmp:
        work = Path(tmp)
        tone = write_wav(work / "tone-1k.wav", np.concatenate([tone_bursts(TONE_HZ), silence(0.2)]))
        carrier_ns = env.get("SPEAQR_CARRIER_NETNS") or target.netns
        carrier = CarrierProcess(settings, work / "carrier", netns=carrier_ns, tls_files=tls_files).start()
        time.sleep(args.trunk_settle)
        results = {}
        try:
            users = [("passthrough", args.passthrough_user)]
            if args.speaqr_user:
                users.append(("speaqr (stand-in)", args.speaqr_user))
            for processor, user in users:
                logger.info("measuring %s (%s): %d calls each", processor, user, args.calls)
                results[processor] = {"user": user, **run_user(sip, carrier, user, args.calls, tone, work)}
        finally:
            carrier.stop()
    env_used = (
        "SPEAQR_TARGET_NETNS",
        "SPEAQR_CARRIER_NETNS",
        "SPEAQR_SIP_ADDRESS",
        "SPEAQR_SIP_DOMAIN",
        "SPEAQR_LAB_CA",
    )
    out = {
        # How to reproduce it (SPEAQR_SIP_USERS holds the passwords: not recorded).
        "command": " ".join(f"{k}={env[k]}" for k in env_used if env.get(k))
        + " SPEAQR_SIP_USERS=... .venv/bin/python benchmarks/call_service.py "
        + " ".join(sys.argv[1:]),
        "label": args.label,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "calls_per_measurement": args.calls,
        "carrier_ring_ms": 100,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"call_service-{args.label}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for processor, r in results.items():
        print(
            f"{processor:20s} post-dial delay median {r['post_dial_delay_ms'].get('median')} ms "
            f"(min {r['post_dial_delay_ms'].get('min')}, max {r['post_dial_delay_ms'].get('max')}); "
            f"INVITE->200 median {r['invite_to_200_ms'].get('median')} ms; "
            f"round trip both legs median {r['round_trip_both_legs_ms'].get('median')} ms "
            f"(min {r['round_trip_both_legs_ms'].get('min')}, max {r['round_trip_both_legs_ms'].get('max')}); "
            f"first audio back median {r['first_audio_back_ms'].get('median')} ms; "
            f"failures {len(r['failures'])}"
        )
    print(f"written {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
