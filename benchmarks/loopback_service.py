"""Loopback service figures on a provisioned target, against Asterisk's own Echo() in the same run.

Measured with the real TLS+SRTP test client (pjsua2), calls interleaved so that both sides of a
comparison see the same load:

* ``loopback`` (the ARI application, passthrough processor) vs ``echo`` (Answer + Echo() in the
  dialplan, lab-only extension): INVITE -> 200 at the client, and the audio round trip (1 kHz
  tone bursts sent, the recording cross-correlated with them: whole-call lag when one lag
  explains the echo, else the median of quarter-second windows, as tests/sip judges it).
* AGI check kinds on the real target: ``loopback-fastagi`` vs ``loopback-plain`` (lab-only
  extensions, the same service with either kind of check): INVITE -> 200, and with
  ``--ssh-key`` the check's own ``elapsed_ms`` from the target's journal (speaqr-agi lines,
  found by the call's Call-ID).

Run from the repository root as root with the target's settings (see benchmarks/results/):

    SPEAQR_TARGET_NETNS=speaqr-loopdev SPEAQR_SIP_ADDRESS=10.0.2.100 SPEAQR_SIP_DOMAIN=sip.speaqr.lab \\
    SPEAQR_LAB_CA=.lab/speaqr-loopdev/lab-ca.crt SPEAQR_SIP_USERS='{"alice": "..."}' \\
    .venv/bin/python benchmarks/loopback_service.py --user alice --calls 20 \\
        --ssh-key /run/speaqr-sip/loopdev/id_ed25519 --label nspawn

With ``--client-netns speaqr-nspawn-client3`` (and ``SPEAQR_PUBLIC_ADDRESS=198.51.100.2``) the
callers run on a client host of the lab's public segment, as customers on the internet do.

Prints a summary and writes benchmarks/results/loopback_service-<label>-<UTC time>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audio import estimate_delay, read_wav, segmented_match, silence, tone_bursts, write_wav  # noqa: E402
from tests.sip.harness import TONE_HZ, SipClient, SipTarget  # noqa: E402

logger = logging.getLogger("benchmarks.loopback_service")
RESULTS = Path(__file__).resolve().parent / "results"
MATCH_PEAK = 0.9


def summary(values: list[float | None]) -> dict:
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


def round_trip_ms(sent: np.ndarray, received: np.ndarray, rate: int) -> float | None:
    whole = estimate_delay(sent, received, rate, max_lag_s=1.0)
    if whole.peak >= MATCH_PEAK:
        return float(whole.lag_ms)
    seg = segmented_match(sent, received, rate, max_lag_s=1.0, threshold=MATCH_PEAK)
    return seg.lag_ms_median if seg.matched_fraction >= 0.8 else None


def agi_elapsed(netns: str, address: str, key: str, call_ids: list[str]) -> dict[str, float]:
    """The AGI check's elapsed_ms per Call-ID, from the target's journal (over SSH in its netns)."""
    cmd = ["ssh", "-q", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    cmd += ["-o", "BatchMode=yes", f"root@{address}", "journalctl --no-pager -o cat -t speaqr-agi --since -2h"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    wanted = set(call_ids)
    found: dict[str, float] = {}
    for line in out.splitlines():
        m = re.search(r'call_id="([^"]*)".*elapsed_ms=([0-9.]+)', line)
        if m and m.group(1) in wanted:
            found[m.group(1)] = float(m.group(2))
    return found


def measure(sip: SipClient, user: str, extensions: list[str], calls: int, tone: Path, work: Path) -> dict:
    """``calls`` rounds; each round calls every extension once (interleaved)."""
    sent, rate = read_wav(tone)
    per: dict[str, dict] = {
        e: {"invite_to_200_ms": [], "round_trip_ms": [], "call_ids": [], "failures": []} for e in extensions
    }
    for i in range(calls):
        for ext in extensions:
            rec = work / f"{ext}-{i}.wav"
            r = sip.call(user, ext, "--play", str(tone), "--record", str(rec))
            d = per[ext]
            if r.get("status") != 200:
                d["failures"].append({"call": i, "status": r.get("status"), "reason": r.get("reason")})
                continue
            d["invite_to_200_ms"].append(r["invite_to_200_ms"])
            d["call_ids"].append(r["call_id"])
            received, _ = read_wav(rec)
            rt = round_trip_ms(sent, received, rate)
            if rt is None:
                d["failures"].append({"call": i, "detail": "echo not found in the recording"})
            d["round_trip_ms"].append(rt)
        logger.info("round %d/%d done", i + 1, calls)
    return per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True, help="a user on the passthrough processor")
    ap.add_argument("--calls", type=int, default=20, help="calls per extension")
    ap.add_argument("--ssh-key", help="root SSH key of the target: adds the AGI check's own elapsed_ms")
    ap.add_argument("--label", default="target")
    ap.add_argument(
        "--client-netns",
        metavar="NETNS",
        help="run the callers in this lab host's namespace, contacting SPEAQR_PUBLIC_ADDRESS "
        "(default: the target's own namespace, a host in its local networks)",
    )
    args = ap.parse_args()
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
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="loopback-bench-") as tmp:
        work = Path(tmp)
        tone = write_wav(work / "tone-1k.wav", np.concatenate([tone_bursts(TONE_HZ), silence(0.2)]))
        logger.info("loopback vs echo: %d calls each", args.calls)
        versus_echo = measure(sip, args.user, ["loopback", "echo"], args.calls, tone, work)
        logger.info("FastAGI vs plain AGI: %d calls each", args.calls)
        agi = measure(sip, args.user, ["loopback-fastagi", "loopback-plain"], args.calls, tone, work)
    if args.ssh_key:
        for d in agi.values():
            elapsed = agi_elapsed(target.netns, target.address, args.ssh_key, d["call_ids"])
            d["agi_check_ms"] = [elapsed.get(c) for c in d["call_ids"]]
    results = {}
    for name, d in {**versus_echo, **agi}.items():
        results[name] = {
            "invite_to_200_ms": summary(d["invite_to_200_ms"]),
            "round_trip_ms": summary(d["round_trip_ms"]),
            "failures": d["failures"],
        }
        if "agi_check_ms" in d:
            results[name]["agi_check_ms"] = summary(d["agi_check_ms"])
    when = datetime.now(UTC)
    out = {
        "label": args.label,
        "when": when.isoformat(timespec="seconds"),
        "calls_per_extension": args.calls,
        "duration_s": round(time.monotonic() - started, 1),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"loopback_service-{args.label}-{when:%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(out))
    for name, r in results.items():
        i2, rt = r["invite_to_200_ms"], r["round_trip_ms"]
        extra = f"; AGI check median {r['agi_check_ms'].get('median')} ms" if "agi_check_ms" in r else ""
        print(
            f"{name:17s} INVITE->200 median {i2.get('median')} ms (min {i2.get('min')}, max {i2.get('max')}); "
            f"round trip median {rt.get('median')} ms (min {rt.get('min')}, max {rt.get('max')}){extra}; "
            f"failures {len(r['failures'])}"
        )
    print(f"written {stem.with_suffix('.md').relative_to(ROOT)} and .json")
    return 0


def markdown(out: dict) -> str:
    rows = []
    for name, r in out["results"].items():
        i2, rt = r["invite_to_200_ms"], r["round_trip_ms"]
        agi = r.get("agi_check_ms", {})
        rows.append(
            f"| `{name}` | {i2.get('median')} | {i2.get('min')} – {i2.get('max')} | {rt.get('median')} | "
            f"{rt.get('min')} – {rt.get('max')} | {agi.get('median', '')} | {len(r['failures'])} |"
        )
    return "\n".join(
        [
            f"# Loopback service vs Echo(), FastAGI vs plain AGI — {out['label']}, {out['when']}",
            "",
            f"{out['calls_per_extension']} calls per extension, interleaved (run took {out['duration_s']} s).",
            "Real TLS+SRTP client (pjsua2) in the target's network namespace; times in ms.",
            "",
            "| extension | INVITE→200 median | min – max | round trip median | min – max | AGI check | failures |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "- `loopback`: the service (AGI check over FastAGI, Stasis, ARI application, passthrough",
            "  processor, externalMedia relay); `echo`: `Answer()` + `Echo()` in the dialplan.",
            "- `loopback-fastagi` / `loopback-plain`: the same service with the check over FastAGI or as",
            '  a plain AGI process; "AGI check" is the check\'s own `elapsed_ms` (journal, by Call-ID).',
            "- Round trip: 1 kHz tone bursts sent, lag of the recording (whole call when one lag explains",
            "  it, else the median of quarter-second windows); includes the client's 20 ms packetisation",
            "  and jitter buffer.",
            "",
            "Reproduce (as root, from the repository root, target up and provisioned):",
            "",
            "```sh",
            'env_file=$(scripts/target/nspawn-up.sh loopdev); . "$env_file"',
            "# provision with an inventory of your own (copy of inventory/example, ansible_host etc.)",
            "SPEAQR_TARGET_NETNS=$SPEAQR_TARGET_NETNS SPEAQR_SIP_ADDRESS=$SPEAQR_SIP_ADDRESS \\",
            "SPEAQR_SIP_DOMAIN=sip.speaqr.lab SPEAQR_LAB_CA=.lab/<inventory host>/lab-ca.crt \\",
            'SPEAQR_SIP_USERS=\'{"alice": "<password>"}\' \\',
            f"  .venv/bin/python benchmarks/loopback_service.py --user alice --calls {out['calls_per_extension']} \\",
            f"  --ssh-key $SPEAQR_SSH_KEY --label {out['label']}",
            "```",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
