"""host-setup for a system test: ``coretriage host-setup install`` into a
short fresh data dir, and everything put back afterwards, also on failure;
or just such a data dir, for a test that sets core_pattern itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from collector.corepattern import lock_for_child, pattern_lock, read_pattern


def cli(data_dir, *argv, check=True):
    # host-setup takes the core_pattern lock; a test holding it hands it down
    proc = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data_dir), *argv],
                          capture_output=True, text=True, timeout=300, check=False, **lock_for_child())
    if check and proc.returncode != 0:
        pytest.fail(f"coretriage {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))  # short: core_pattern has 127 bytes


@pytest.fixture
def data_dir():
    """A fresh data dir whose path is short enough for core_pattern; removed after."""
    path = _short_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def collector_installed():
    """``host-setup install`` into a fresh data dir; everything put back after."""
    data = _short_dir()
    with pattern_lock():
        before = read_pattern()
        limit = Path("/proc/sys/kernel/core_pipe_limit").read_text()
        try:
            cli(data, "host-setup", "install")
            yield data
        finally:
            cli(data, "host-setup", "uninstall", "--force", check=False)
            if read_pattern() != before:  # never leave the machine changed
                Path("/proc/sys/kernel/core_pattern").write_text(before + "\n")
            assert read_pattern() == before
            assert Path("/proc/sys/kernel/core_pipe_limit").read_text() == limit
            shutil.rmtree(data, ignore_errors=True)
