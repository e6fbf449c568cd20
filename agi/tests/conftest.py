import sys
from pathlib import Path

import pytest

# Test helpers (fake Asterisk, fake ARI) live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: "pytest.Config") -> None:
    config.addinivalue_line(
        "markers", "app_config(sections, flows=None): ARI application configuration for a test"
    )
    config.addinivalue_line(
        "markers", "loopback_limits(limits): [policy.loopback] of the loopback-limits fixture"
    )
