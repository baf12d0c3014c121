"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No MARKETPLACE_* variable set and no .env file in reach: the settings' defaults, then what a test
    sets with the returned monkeypatch."""
    for name in list(os.environ):
        if name.startswith("MARKETPLACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    return monkeypatch
