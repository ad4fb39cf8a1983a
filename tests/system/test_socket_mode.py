"""Cores over a socket (core_pattern '@', Linux 6.16+): the collector daemon
listens, the kernel connects, and the bundle is the pipe handler's."""

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path


import crashkit
from coretriage.store import Store
from collector.corepattern import pattern_lock, read_pattern
from collector.socket_server import SOCKET_NAME, kernel_supports_socket, serve
from collector.watch import Collector
from coretriage.wiring import Wiring
from coretriage.config import load_config
from collector.hostsetup.install import install, uninstall


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
