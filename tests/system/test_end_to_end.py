"""The whole host pipeline through the real kernel: host-setup install, a
crash, the pipe handler's bundle, the collector, the analysis, the groups,
and uninstall putting everything back."""

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import crashkit
from analyzer.store import Store
from collector.corepattern import pattern_lock, read_pattern
from collector.watch import Collector
from coretriage.cli import make_submit
from coretriage.config import load_config


def cli(data_dir, *argv, check=True):
    proc = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data_dir), *argv],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def installed(tmp_path):
    data = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))  # short: core_pattern has 127 bytes
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


def test_crash_to_group_through_the_kernel(installed, samples, tmp_path):
    assert read_pattern().startswith("|") and "collector.handler" in read_pattern()
    doctor = json.loads(cli(installed, "host-setup", "doctor", "--json", check=False).stdout)
    assert {c["name"]: c["status"] for c in doctor}["core_pattern"] == "OK"

    config = load_config(installed)
    store = Store(config.database_url)
    stop = threading.Event()
    collector = Collector(config.spool_dir, make_submit(config, store), rescan=0.5)
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # the program lives in a directory we delete before the analysis: only
        # the bundle's own copy of it can give its symbols
        exe = tmp_path / "app" / "segv"
        exe.parent.mkdir()
        shutil.copy(samples("segv").exe, exe)
        for n in range(3):
            proc = subprocess.run([str(exe), "x" * n], preexec_fn=crashkit.allow_cores, capture_output=True)
            assert proc.returncode == -11
        shutil.rmtree(exe.parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(g.count for g in store.groups()) < 3:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)

    groups = json.loads(cli(installed, "list", "--json").stdout)
    assert len(groups) == 1 and groups[0]["count"] == 3
    assert groups[0]["signature"] == samples("segv").expected_signature
    crash_id = store.crashes_of(int(groups[0]["group_id"][1:]))[0].id
    shown = json.loads(cli(installed, "show", crash_id, "--json").stdout)
    modules = {m["path"]: m for m in shown["analysis"]["modules"]}
    assert modules[str(exe)]["found_at"].startswith(str(config.spool_dir))  # from the bundle's sysroot
    assert shown["meta"]["pid"] and shown["meta"]["host_time"] and shown["host"]
    assert not shown["analysis"]["problems"]
