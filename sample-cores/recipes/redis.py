"""A real Redis, built from Debian's source package with its default debug
info, killed by ``DEBUG SEGFAULT`` from a real client: the crash report
must name the command the current client was running."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import crashkit
import debsrc
from crashkit import Sample

START_TIMEOUT = 15.0


def build() -> Path:
    """redis-server built with Redis' own flags (-O2 -g -ggdb), libc malloc."""
    tree = debsrc.source_tree("redis")
    server = tree / "src" / "redis-server"
    if not server.exists():
        subprocess.run(["make", "-j2", "MALLOC=libc", "BUILD_TLS=no", "USE_SYSTEMD=no"], cwd=tree, check=True,
                       capture_output=True, timeout=1800)
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def debug_segfault(workdir: Path, variant: int = 0) -> Sample:
    exe = build()
    port = _free_port()
    cores = workdir / "cores"
    with crashkit.cores_into(cores):
        proc = subprocess.Popen([str(exe), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--enable-debug-command", "yes", "--dir", str(workdir)],
                                preexec_fn=crashkit.allow_cores, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    client = socket.create_connection(("127.0.0.1", port), timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"redis-server did not listen on port {port}") from None
                    time.sleep(0.05)
            with client:
                client.sendall(b"*2\r\n$5\r\nDEBUG\r\n$8\r\nSEGFAULT\r\n")
                if proc.wait(timeout=60) != -signal.SIGSEGV:
                    raise RuntimeError(f"redis-server exited {proc.returncode}, not by SIGSEGV")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        core = crashkit.wait_for_core(cores, proc.pid)
    return Sample("redis-debug-segfault", core, exe, expected_signature="debugCommand | call | processCommand",
                  expected_signal="SIGSEGV")
