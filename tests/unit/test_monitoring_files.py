"""The shipped monitoring files (files/prometheus, files/grafana): Prometheus accepts the example
configuration and the alert rules (promtool, from scripts/host-setup.sh), and every series of
the ARI application they use is one the application really exposes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client import generate_latest

from speaqr_sip.ari.app import AriApplication
from speaqr_sip.config import parse_ari_config

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "files" / "prometheus"
DASHBOARD = ROOT / "files" / "grafana" / "speaqr-sip-dashboard.json"
PROMTOOL = ROOT / ".lab" / "tools" / "promtool"
SERIES = re.compile(r"\b(speaqr_ari_[a-z0-9_]+|process_[a-z0-9_]+)")


def promtool(*args: str) -> subprocess.CompletedProcess:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} missing: run scripts/host-setup.sh")
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60, check=False)


def exposed_series() -> set[str]:
    async def scrape() -> str:
        async with aiohttp.ClientSession() as session:
            app = AriApplication(parse_ari_config({}), session)
            return generate_latest(app.metrics.registry).decode()

    text = asyncio.run(scrape())
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            if kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            elif kind == "histogram":
                names.update(name + suffix for suffix in ("_bucket", "_count", "_sum"))
            else:
                names.add(name)
    return names


def used_in_rules() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "speaqr-sip-rules.yml").read_text())
    return {m for group in rules["groups"] for rule in group["rules"] for m in SERIES.findall(rule["expr"])}


def used_in_dashboard() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {m for panel in dashboard["panels"] for t in panel["targets"] for m in SERIES.findall(t["expr"])}


def test_promtool_accepts_the_example_configuration_and_its_rules():
    p = promtool("check", "config", str(PROMETHEUS / "prometheus-example.yml"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 9 rules found" in p.stdout + p.stderr, p.stdout + p.stderr


@pytest.mark.parametrize("used", [used_in_rules, used_in_dashboard], ids=["rules", "dashboard"])
def test_every_series_used_is_exposed_by_the_application(used):
    names = used()
    assert names, "no series of the application used"
    assert names <= exposed_series(), f"not exposed: {sorted(names - exposed_series())}"


def test_the_dashboard_panels_each_query_something():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
