"""collector/socket_server.py: cores over a socket (core_pattern '@', Linux
6.16+): the collector daemon listens, the kernel connects, and the bundle is
the pipe handler's. The real socket-mode daemon (``coretriage collector run
--socket``) must not keep an fd per crash: it runs for months and sees crash
storms."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import crashkit
from collector.bundle import Bundle
from collector.corepattern import pattern_lock, read_pattern, swapped
from collector.socket_server import SOCKET_NAME, kernel_supports_socket, serve
from collector.spool import finished_bundles
from coretriage.store import Store
from collector.watch import Collector
from coretriage.wiring import Wiring
from coretriage.config import load_config
from collector.hostsetup.install import install, uninstall
import servicekit


def test_kernel_is_new_enough():
    # this project's machines run Linux 6.18; a CI machine without socket
    # support must say so loudly rather than skip the mode's tests
    assert kernel_supports_socket(), f"Linux {os.uname().release} has no coredump sockets"


def test_crash_through_the_socket_to_a_group(samples, tmp_path):
    exe = samples("segv").exe  # built (and crashed once) before the pattern is ours
    data = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    etc = tmp_path / "root"  # /etc files of host-setup go to a scratch root here
    config = load_config(data)
    store = Store(config.database_url)
    stop = threading.Event()
    sock = str(data / SOCKET_NAME)
    server = threading.Thread(target=serve, args=(sock, str(data), stop), daemon=True)
    collector = Collector(config.spool_dir, Wiring(config).submit(), rescan=0.5)
    watcher = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    with pattern_lock():
        before = read_pattern()
        try:
            server.start()
            watcher.start()
            deadline = time.monotonic() + 10
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.05)
            install(data, ["unused"], root=etc, socket=Path(sock))
            assert read_pattern() == f"@{sock}"
            for n in range(2):
                p = subprocess.run([str(exe), "via the socket" + "!" * n], preexec_fn=crashkit.allow_cores,
                                   capture_output=True, timeout=30)
                assert p.returncode == -11
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and sum(g.count for g in store.groups()) < 2:
                time.sleep(0.2)
        finally:
            uninstall(data, root=etc, force=True)
            stop.set()
            server.join(timeout=10)
            watcher.join(timeout=10)
            assert read_pattern() == before
    groups = store.groups()
    assert len(groups) == 1 and groups[0].count == 2
    assert groups[0].signature == samples("segv").expected_signature
    crash = store.crashes_of(groups[0].id)[0]
    assert crash.meta["exe"] == str(exe) and crash.meta["pid"] > 0
    assert not any("discarded" in p for p in crash.meta["problems"]), crash.meta["problems"]
    assert crash.analysis["signal"]["name"] == "SIGSEGV"  # from the core: the socket carries no %s
    assert not os.path.exists(sock)
    shutil.rmtree(data, ignore_errors=True)


# ---- the daemon's fds ----

CRASHES = 5


def open_fds(pid: int) -> dict[str, str]:
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return fds


def wait_done(spool: Path, count: int, daemon: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until ``count`` bundles are handed over and the daemon is idle again:
    each capture thread's last act, after closing its connection and pidfd,
    is its log line, which names the bundle's path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()
        bundles = list(finished_bundles(spool, include_done=True))
        if (len(bundles) >= count and all(Bundle(b).is_done() for b in bundles)
                and all(str(b) in log.read_text() for b in bundles)):
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} bundles not handed over within {timeout} s")


def test_daemon_fds_do_not_grow_across_crashes(samples):
    exe = samples("segv").exe  # built (and crashed once) before the pattern is ours
    data = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    sock = data / SOCKET_NAME
    log = data.with_name(f"{data.name}.log")
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data),
                                   "collector", "run", "--socket"], stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while not sock.exists() and time.monotonic() < deadline:
            assert daemon.poll() is None, log.read_text()
            time.sleep(0.05)
        assert sock.exists()

        def crash(n: int) -> None:
            p = subprocess.run([str(exe), f"fd count {n}"], preexec_fn=crashkit.allow_cores,
                               capture_output=True, timeout=30)
            assert p.returncode == -11

        with swapped(f"@{sock}"):
            crash(0)  # the first crash opens what stays open (database, syslog, ...)
            wait_done(data / "spool", 1, daemon, log)
            before = open_fds(daemon.pid)
            for n in range(1, CRASHES + 1):
                crash(n)
            wait_done(data / "spool", CRASHES + 1, daemon, log)
            after = open_fds(daemon.pid)
        new = sorted(target for fd, target in after.items() if before.get(fd) != target)
        assert len(after) <= len(before), (f"daemon fds grew from {len(before)} to {len(after)} "
                                           f"over {CRASHES} crashes: {new}")
    finally:
        servicekit.stop(daemon, 20)
        shutil.rmtree(data, ignore_errors=True)
        log.unlink(missing_ok=True)
