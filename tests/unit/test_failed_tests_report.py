"""scripts/ci/failed_tests.py: the failed and errored tests of a JUnit report, named with their
first and last message lines; passed and skipped tests are not listed; a missing report is said."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.playbook import ROOT

SCRIPT = ROOT / "scripts" / "ci" / "failed_tests.py"
REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.sip.test_loopback" name="test_passes" time="1.0"/>
<testcase classname="tests.sip.test_loopback" name="test_skipped" time="0.0"><skipped message="no"/></testcase>
<testcase classname="tests.sip.test_call" name="test_audio_both_ways" time="12.5">
<failure message="AssertionError: correlation 0.12 &lt; 0.8&#10;[+44 more lines]">def test():
&gt;   assert correlation &gt; 0.8
E   AssertionError: correlation 0.12 &lt; 0.8
tests/sip/test_call.py:12: AssertionError</failure>
</testcase>
<testcase classname="tests.infra.test_backup" name="test_restore" time="3.0">
<error message="fixture failed">x</error></testcase>
</testsuite></testsuites>
"""


def report_of(path: Path) -> str:
    return subprocess.run([sys.executable, SCRIPT, str(path)], capture_output=True, text=True, check=True).stdout


def test_names_each_failed_and_errored_test_with_its_first_message_lines(tmp_path):
    path = tmp_path / "vm.xml"
    path.write_text(REPORT)
    printed = report_of(path)
    assert f"{path}: 2 failed" in printed
    assert "FAILURE tests.sip.test_call::test_audio_both_ways (12.5 s)" in printed
    assert "AssertionError: correlation 0.12 < 0.8" in printed
    assert "tests/sip/test_call.py:12: AssertionError" in printed
    assert "more lines" not in printed and "def test" not in printed
    assert "ERROR tests.infra.test_backup::test_restore (3.0 s)" in printed
    assert "test_passes" not in printed and "test_skipped" not in printed


def test_a_scenario_that_failed_before_verify_has_no_report_and_says_so(tmp_path):
    printed = report_of(tmp_path / "default.xml")
    assert "no test report" in printed
