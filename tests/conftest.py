"""Shared fixtures. Sample cores are made for real (the kernel writes them),
once per test session, by the recipes under sample-cores/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample-cores"))
sys.path.insert(0, str(ROOT / "tests" / "system"))


@pytest.fixture
def config(tmp_path):
    from coretriage.config import load_config

    return load_config(tmp_path / "data")


@pytest.fixture
def store(config):
    from coretriage.store import Store

    config.data_dir.mkdir(parents=True, exist_ok=True)
    s = Store(config.database_url)
    yield s
    s.close()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("sample cores need root (core_pattern); run the tests as root")
    return tmp_path_factory.mktemp("samples")


@pytest.fixture(scope="session")
def samples(sample_dir):
    """name -> Sample, one real crash of every native recipe."""
    from recipes import native

    cache = {}

    def get(name: str, variant: int = 0):
        key = (name, variant)
        if key not in cache:
            cache[key] = native.RECIPES[name](sample_dir, variant)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def analyzed(samples):
    """name -> (Sample, Analysis, Signature), analyzed once per session."""
    from analyzer.analyze import analyze_core
    from analyzer.signature import generate

    cache = {}

    def get(name: str, variant: int = 0):
        key = (name, variant)
        if key not in cache:
            s = samples(name, variant)
            a = analyze_core(s.core, s.exe)
            cache[key] = (s, a, generate(a))
        return cache[key]

    return get
