from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from testbed.machine_share import MachineShare
from testbed.peers import DEFAULT_SIP_ENGINE, SIP_ENGINES
from testbed.recording import RecordingServer

_MACHINE_SHARE = pytest.StashKey[MachineShare]()


@pytest.fixture(params=SIP_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The SIP engine the agent under test runs on (every end-to-end test runs on each)."""
    return str(request.param)


@pytest.fixture
async def local_server() -> AsyncIterator[RecordingServer]:
    """The minimal realtime server on 127.0.0.1 (a free port), recording every session."""
    async with RecordingServer("127.0.0.1", 0) as server:
        yield server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _run_above_sip_once(config, items)
    if config.stash.get(_MACHINE_SHARE, None) is not None:
        # Exclusive tests first (each worker collects alike, so the order stays the same in
        # all): each worker gets them in one run at the start and keeps the machine from
        # one to the next (pytest_runtest_protocol), instead of waiting for the other
        # worker's running test before each one, scattered through the suite.
        items.sort(key=lambda item: not _exclusive(item))
    # SIP tests need the real SIPp binary; without it they must not silently pass.
    if shutil.which("sipp"):
        return
    for item in items:
        if "sipp" in item.keywords:
            item.add_marker(
                pytest.mark.skip(reason="sipp not installed (apt-get install sip-tester)")
            )


def _run_above_sip_once(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the other engines' copies of tests marked ``above_sip``.

    Such a test checks what happens above the SIP edge (a protocol dialect, a backend, tools,
    webhooks, session rollover) through a real call: the engine only carries it, and every
    SIP behaviour it touches is tested on each engine elsewhere. Running it once, on the
    default engine, keeps the suite inside its time budget.
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("engine") if callspec is not None else None
        if engine not in (None, DEFAULT_SIP_ENGINE) and item.get_closest_marker("above_sip"):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "above_sip: behaviour above the SIP edge, run through a real call on the default "
        "engine only",
    )
    config.addinivalue_line("markers", "sipp: needs the SIPp binary")
    config.addinivalue_line(
        "markers", "slow: real-time end-to-end calls with the speech models (run by default)"
    )
    config.addinivalue_line(
        "markers",
        "exclusive: needs the machine to itself (CPU-heavy speech models or millisecond "
        "timing assertions): under pytest-xdist no other test runs meanwhile",
    )
    # A pytest-xdist worker (the README's `uv run pytest` runs two): the workers share the
    # controller's temporary directory, where the lock files are.
    if hasattr(config, "workerinput"):
        directory = Path(config.option.basetemp).parent / "machine-share"
        config.stash[_MACHINE_SHARE] = MachineShare(directory)


def _exclusive(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("exclusive") is not None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Each test runs holding the machine: ``exclusive`` ones alone, the others side by side.

    Around the whole protocol (setup, call, teardown) and outside pytest-timeout's timer, so
    waiting for the machine never counts against a test's timeout. A worker whose next test
    is exclusive too keeps the machine. Serial runs (no xdist, ``-n 0``) have no share and
    take nothing.
    """
    share = item.config.stash.get(_MACHINE_SHARE, None)
    if share is None:
        return (yield)
    share.take(exclusive=_exclusive(item))
    try:
        return (yield)
    finally:
        if not (_exclusive(item) and _exclusive(nextitem)):
            share.release()
