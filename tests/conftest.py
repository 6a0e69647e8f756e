"""Shared fixtures. Every test builds its own plugin manager: nothing global."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaebench.data import DatasetSpec, load_digits, prepare
from vaebench.plugin_manager import load_plugins

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def plugins():
    return load_plugins()


@pytest.fixture(scope="session")
def digits():
    spec = DatasetSpec("digits", "test digits", load_digits)
    return prepare(spec, None, "dynamic", torch.device("cpu"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"needs MNIST in {SHARED_DATA} (the project's shared/ folder), which this machine lacks")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real dataset cache or $VAEBENCH_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)
    torch.manual_seed(0)
