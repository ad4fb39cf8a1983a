"""The real socket-mode daemon (``coretriage collector run --socket``) must not
keep an fd per crash: it runs for months and sees crash storms."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import crashkit
from collector.bundle import Bundle
from collector.corepattern import swapped
from collector.socket_server import SOCKET_NAME
from collector.spool import finished_bundles

CRASHES = 5


def open_fds(pid: int) -> dict[str, str]:
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return fds


def wait_done(spool: Path, count: int, daemon: subprocess.Popen, timeout: float = 90) -> None:
    """Until ``count`` bundles are handed over and the daemon is idle again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.stderr.read()
        bundles = list(finished_bundles(spool, include_done=True))
        if len(bundles) >= count and all(Bundle(b).is_done() for b in bundles):
            time.sleep(1.0)  # the capture threads log and exit after meta.json
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} bundles not handed over within {timeout} s")


def test_daemon_fds_do_not_grow_across_crashes(samples):
    exe = samples("segv").exe  # built (and crashed once) before the pattern is ours
    data = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    sock = data / SOCKET_NAME
    daemon = subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data),
                               "collector", "run", "--socket"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.stderr.read()
            time.sleep(0.05)
        assert sock.exists()

        def crash(n: int) -> None:
            p = subprocess.run([str(exe), f"fd count {n}"], preexec_fn=crashkit.allow_cores,
                               capture_output=True, timeout=30)
            assert p.returncode == -11

        with swapped(f"@{sock}"):
            crash(0)  # the first crash opens what stays open (database, syslog, ...)
            wait_done(data / "spool", 1, daemon)
            before = open_fds(daemon.pid)
            for n in range(1, CRASHES + 1):
                crash(n)
            wait_done(data / "spool", CRASHES + 1, daemon)
            after = open_fds(daemon.pid)
        new = sorted(target for fd, target in after.items() if before.get(fd) != target)
        assert len(after) <= len(before), (f"daemon fds grew from {len(before)} to {len(after)} "
                                           f"over {CRASHES} crashes: {new}")
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(data, ignore_errors=True)
