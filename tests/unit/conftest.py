"""Fixtures of the unit tests."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from builders import DAEMON


@pytest.fixture
def short_tmp():
    """A short directory: pytest's tmp_path is long enough to push a handler
    command past core_pattern's 127 characters."""
    d = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    yield d
    shutil.rmtree(d)


@pytest.fixture
def host(short_tmp):
    """(a short directory, a root tree under it holding /etc/docker/daemon.json)"""
    tmp_path = short_tmp
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_text(json.dumps(DAEMON, indent=4) + "\n")
    return tmp_path, root
