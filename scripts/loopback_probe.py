"""Place one loopback call with a real TLS+SRTP client and measure what came back.

Used by scripts/demo.sh: sends 1 kHz tone bursts, records the returned audio and reports the
call's setup time and the audio round trip found by cross-correlation. Exit status 1 when the
call fails or the tone does not come back.

usage: python scripts/loopback_probe.py -- <client command prefix and connection options>
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.audio import estimate_delay, read_wav, silence, tone_bursts, write_wav  # noqa: E402

MIN_CORRELATION = 0.5


def main(argv: list[str]) -> int:
    client = argv[argv.index("--") + 1 :] if "--" in argv else argv
    with tempfile.TemporaryDirectory() as work:
        sent_path, back_path = Path(work, "tone.wav"), Path(work, "back.wav")
        write_wav(sent_path, np.concatenate([tone_bursts(1000), silence(0.3)]))
        out = subprocess.run(
            [*client, "--play", str(sent_path), "--record", str(back_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        call = json.loads(out.stdout)
        result = {"status": call.get("status"), "invite_to_200_ms": call.get("invite_to_200_ms")}
        if call.get("status") == 200 and back_path.exists():
            sent, rate = read_wav(sent_path)
            back, _ = read_wav(back_path)
            delay = estimate_delay(sent, back, rate, max_lag_s=1.0)
            result |= {"round_trip_ms": round(delay.lag_ms, 1), "correlation": round(delay.peak, 3)}
    json.dump(result, sys.stdout)
    print()
    ok = result["status"] == 200 and result.get("correlation", 0.0) >= MIN_CORRELATION
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
