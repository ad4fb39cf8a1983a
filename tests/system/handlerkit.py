"""Crash a real program under whatever pipe handler core_pattern names, and
find the bundle the handler wrote: shared by the handler's system tests and
the adversarial ones."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import zstandard

import crashkit
from collector.corepattern import read_pattern
from collector.spool import finished_bundles


def crash(argv, env=None, cwd=None, timeout=120.0, preexec_fn=crashkit.allow_cores) -> tuple[int, float]:
    """Run ``argv`` until it dies of SIGSEGV: (pid, seconds until reaped)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, preexec_fn=preexec_fn, env=env if env is not None else {},
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert rc == -11, f"{argv[0]!r} exited with {rc}, not SIGSEGV"
    return proc.pid, time.monotonic() - start


def bundle_of(spool: Path, pid: int, timeout: float = 30.0) -> Path:
    """The finished bundle of ``pid`` (meta.json written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in finished_bundles(spool):
            if path.name.split("-")[1] == str(pid):
                return path
        time.sleep(0.05)
    raise AssertionError(f"no finished bundle for pid {pid} in {spool}: "
                         f"{sorted(os.listdir(spool)) if spool.exists() else 'no spool'}")


def elf_core_header(core_zst: Path) -> bytes:
    with open(core_zst, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read(64)


def core_bytes(core_zst: Path) -> bytes:
    with open(core_zst, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def installed_argv(values: dict[str, str]) -> list[str]:
    """The command core_pattern names, its %-specifiers filled in as the kernel would."""
    pattern = read_pattern()
    assert pattern.startswith("|"), pattern
    return [values.get(arg, arg) for arg in pattern[1:].split()]


@contextlib.contextmanager
def core_pipe_limit(n: int | None = None):
    """kernel.core_pipe_limit = n (host-setup install's unless given) for a
    while: the kernel then keeps the crashed process (and its memory) until the
    handler closes stdin. The caller holds the core_pattern lock."""
    from collector.hostsetup.render import CORE_PIPE_LIMIT

    path = Path("/proc/sys/kernel/core_pipe_limit")
    old = path.read_text()
    path.write_text(f"{n or CORE_PIPE_LIMIT}\n")
    try:
        yield
    finally:
        path.write_text(old)
