"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_kernel.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh home and no lateness slack, so tests see late data at once."""
    return load_settings(home=tmp_path / "home", allowed_lateness=0, batch_interval=0.05)


def pytest_configure(config: pytest.Config) -> None:
    # Property tests must give the same verdict on every run (CI included): fixed example order.
    from hypothesis import settings as hypothesis_settings

    hypothesis_settings.register_profile("nexus", derandomize=True, database=None, deadline=None)
    hypothesis_settings.load_profile("nexus")
