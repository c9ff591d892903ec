"""Suite-wide rules. A skipped test is a defect here: CI must exercise every tier, so any skip
turns the run red (set EDGEKIT_ALLOW_SKIPS=1 to look around locally)."""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and not os.environ.get("EDGEKIT_ALLOW_SKIPS"):
        print(f"\n{len(_skipped)} test(s) skipped; skips fail this suite:")
        for nodeid in _skipped:
            print(f"  SKIPPED {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
