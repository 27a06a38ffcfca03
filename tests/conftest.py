from __future__ import annotations

import shutil

import pytest

from testbed.peers import SIP_ENGINES


@pytest.fixture(params=SIP_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The SIP engine the agent under test runs on (every end-to-end test runs on each)."""
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # SIP tests need the real SIPp binary; without it they must not silently pass.
    if shutil.which("sipp"):
        return
    for item in items:
        if "sipp" in item.keywords:
            item.add_marker(
                pytest.mark.skip(reason="sipp not installed (apt-get install sip-tester)")
            )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sipp: needs the SIPp binary")
    config.addinivalue_line(
        "markers", "slow: real-time end-to-end calls with the speech models (run by default)"
    )
