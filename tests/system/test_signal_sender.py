"""Who sent the fatal signal, by name (issue 11, part 6): a process killed by
another one's kill(SIGSEGV), its core through the kernel's pipe handler;
the handler names the sender while it runs (the core holds only its pid and
uid), on the host and inside a pid namespace of its own, as a container's;
the text export's Signal line says "sent by pid N (comm, uid U)"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import crashkit
from collector.corepattern import core_pattern, pattern_lock, read_pattern, swapped
from collector.spool import finished_bundles, read_meta
from handlerkit import core_pipe_limit
from coretriage.config import load_config
from coretriage.pipeline import process_bundle
from coretriage.reports import crash_json, crash_report
from coretriage.store import Store

PYTHON = sys.executable
CGROUP = Path("/sys/fs/cgroup/pids")


def _only_bundle(spool: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(finished_bundles(spool)) if spool.exists() else []
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no finished bundle in {spool}")


def _stored(data_dir: Path, bundle: Path):
    config = load_config(data_dir)
    store = Store(config.database_url)
    try:
        done = process_bundle(config, store, bundle)
        row = store.crash(done.crash.id)
        return crash_report(row, "text"), crash_json(row), crash_report(row, "markdown")
    finally:
        store.close()


def _signal_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Signal"))


def test_a_sender_on_the_host_is_named(data_dir):
    comm = Path("/proc/self/comm").read_text().strip()
    with pattern_lock():
        before = read_pattern()
        try:
            with swapped(core_pattern(PYTHON, data_dir=str(data_dir)), lock=False), core_pipe_limit():
                victim = subprocess.Popen(["sleep", "600"], preexec_fn=crashkit.allow_cores)
                time.sleep(0.2)
                os.kill(victim.pid, signal.SIGSEGV)
                assert victim.wait(timeout=60) == -signal.SIGSEGV
                bundle = _only_bundle(data_dir / "spool")
        finally:
            assert read_pattern() == before
    assert read_meta(bundle).signal_sender == {"pid": os.getpid(), "uid": os.getuid(), "comm": comm}
    text, as_json, markdown = _stored(data_dir, bundle)
    line = _signal_line(text)
    assert f"SIGSEGV (SI_USER) sent by pid {os.getpid()} ({comm}, uid {os.getuid()})" in line, line
    assert " at 0x" not in line
    assert f"({comm}, uid" in markdown
    assert as_json["analysis"]["signal"]["sender_comm"] == comm


def test_a_sender_in_the_crashed_processs_pid_namespace_is_named(data_dir):
    """unshare --pid: the shell is pid 1 there and kills its child (pid 2),
    as a container's supervisor would; a cgroup of its own tells this
    namespace's pid 1 from every other namespace's on the machine."""
    group = CGROUP / f"ct-sender-{os.getpid()}"
    group.mkdir()

    def enter():
        (group / "cgroup.procs").write_text(str(os.getpid()))
        crashkit.allow_cores()

    script = "sleep 600 & sleep 0.3; kill -SEGV $!; wait $!; exit 0"
    try:
        with pattern_lock():
            before = read_pattern()
            try:
                # the kernel holds the crashed process until the handler has read its core,
                # so the shell's wait (and the shell) lasts until then, as a supervisor's would
                with swapped(core_pattern(PYTHON, data_dir=str(data_dir)), lock=False), core_pipe_limit():
                    done = subprocess.run(["unshare", "--pid", "--fork", "sh", "-c", script], preexec_fn=enter,
                                          timeout=120, capture_output=True, text=True)
                    assert done.returncode == 0, done.stderr
                    bundle = _only_bundle(data_dir / "spool")
            finally:
                assert read_pattern() == before
    finally:
        group.rmdir()
    meta = read_meta(bundle)
    assert meta.ns_pid == 2 and meta.signal_sender == {"pid": 1, "uid": 0, "comm": "sh"}, meta.signal_sender
    text, as_json, _ = _stored(data_dir, bundle)
    assert "SIGSEGV (SI_USER) sent by pid 1 (sh, uid 0)" in _signal_line(text)
    assert json.loads(json.dumps(as_json))["analysis"]["signal"]["sender_pid"] == 1
