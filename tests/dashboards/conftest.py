"""Fixtures of the dashboard, notebook and scheduler tests: the venv kernelspec, Chromium, artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .dash_helpers import ARTIFACTS, CHROMIUM


@pytest.fixture(scope="session", autouse=True)
def nexus_kernelspec() -> str:
    """The ``nexus`` kernelspec inside the venv (what papermill, nbval and Voila run notebooks on)."""
    from nexus_kernel.scheduler import ensure_kernelspec

    return ensure_kernelspec()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium. Absent: skipped with the reason when not root; in CI (root) it must be there."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() == 0:
            pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium` "
                        "(scripts/ensure-system-packages.sh installs it as root)")
        reason = f"{CHROMIUM} is not installed and this user cannot install it (apt-get install -y chromium)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path

