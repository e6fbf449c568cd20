"""speaqr-doctor [--user NAME ...] [--json]: one diagnosis per point of the troubleshooting list;
exit status 1 when a point fails, 2 when the configuration cannot be read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speaqr_sip.config import ConfigError, load_agi_config, load_ari_config
from speaqr_sip.doctor.checks import Settings, diagnose
from speaqr_sip.doctor.findings import failed, render_json, render_text
from speaqr_sip.doctor.probes import SystemProbes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="speaqr-doctor", description=__doc__)
    p.add_argument("--user", action="append", default=[], help="check this account (repeatable)")
    p.add_argument(
        "--config-dir", default="/etc/speaqr-sip", help="where agi.toml and ari.toml are"
    )
    p.add_argument("--fastagi-unit", default="speaqr-fastagi")
    p.add_argument(
        "--speaqr",
        choices=("auto", "always", "never"),
        default="auto",
        help="probe Speaqr: auto = when [speaqr] url is set (a user may choose it)",
    )
    p.add_argument("--certificate-warning-days", type=int, default=21)
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config_dir = Path(args.config_dir)
    try:
        agi = load_agi_config(config_dir / "agi.toml")
        ari = load_ari_config(config_dir / "ari.toml")
    except (ConfigError, OSError) as exc:
        print(f"speaqr-doctor: cannot read the configuration: {exc}", file=sys.stderr)
        return 2
    template = ari.call.trunk_endpoint_template
    settings = Settings(
        ari_app=ari.ari.app,
        fastagi_unit=args.fastagi_unit,
        carrier=template.rsplit("@", 1)[1] if "@" in template else "",
        speaqr_used=args.speaqr == "always" or (args.speaqr == "auto" and bool(ari.speaqr.url)),
        certificate_warning_days=args.certificate_warning_days,
    )
    findings = diagnose(SystemProbes(agi, ari), settings, args.user)
    print(render_json(findings) if args.json else render_text(findings))
    return 1 if failed(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
