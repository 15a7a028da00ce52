from __future__ import annotations

import os

import pytest


@pytest.fixture
def cache_env(tmp_path_factory, monkeypatch):
    """A synthetic-data cache shared by the tests of one session."""
    cache = tmp_path_factory.getbasetemp() / "pspnet-cache"
    monkeypatch.setenv("PSPNET_CACHE", str(cache))
    return {**os.environ, "PSPNET_CACHE": str(cache)}
