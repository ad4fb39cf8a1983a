"""Build small programs and crash them for real, collecting the kernel's core.

Used by the sample-core recipes, the tests and the benchmarks. The kernel
writes the core, so everything downstream sees exactly what it would see on a
production host. Needs root: core_pattern is set for the duration of a
``cores_into`` block and always put back.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


@dataclass(frozen=True)
class Sample:
    """One real crash: the core, the program that made it and what we expect."""

    name: str
    core: Path
    exe: Path
    expected_signature: str = ""  # exact signature, when it is stable
    expected_prefix: str = ""  # or the signature's first frames
    expected_signal: str = ""
    sysroot: Path | None = None
    extra: dict = field(default_factory=dict)


@contextlib.contextmanager
def core_pattern(pattern: str):
    """Set the kernel's core_pattern for the block and always put it back,
    under the lock every coretriage tool takes (one setting, one machine)."""
    from collector.corepattern import swapped

    with swapped(pattern):
        yield


@contextlib.contextmanager
def cores_into(directory: Path):
    """Point the kernel's core_pattern at ``directory`` for the block."""
    directory.mkdir(parents=True, exist_ok=True)
    # Services that drop privileges (postgres) must be able to write here.
    os.chmod(directory, 0o1777)
    with core_pattern(f"{directory}/core.%p"):
        yield directory


def allow_cores() -> None:
    """preexec_fn: lift the core size limit in the child."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def compile_c(source: str, out: Path, *, cc: str = "gcc", flags: tuple[str, ...] = ()) -> Path:
    """Compile one file from sample-cores/src with debug info."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = SRC / source
    cmd = [cc, "-g", "-O0", "-fno-omit-frame-pointer", *flags, "-o", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def wait_for_core(directory: Path, pid: int, timeout: float = 30.0) -> Path:
    """The kernel writes the core before the parent reaps the child, but a
    core from a grandchild (a server's worker) may land later: poll."""
    core = directory / f"core.{pid}"
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if core.exists():
            size = core.stat().st_size
            if size == last and size > 0:
                return core
            last = size
        time.sleep(0.1)
    raise RuntimeError(f"no core for pid {pid} in {directory}")


def crash(argv: list[str], directory: Path, *, env: dict | None = None,
          expect_signal: int | None = None, timeout: float = 60.0) -> Path:
    """Run ``argv`` until it dies of a signal and return its core."""
    with cores_into(directory):
        proc = subprocess.Popen(argv, preexec_fn=allow_cores, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        if proc.returncode >= 0:
            raise RuntimeError(f"{argv[0]} exited {proc.returncode} instead of crashing: {err[-500:]!r}")
        if expect_signal is not None and -proc.returncode != expect_signal:
            raise RuntimeError(f"{argv[0]} died of {signal.Signals(-proc.returncode).name}")
        return wait_for_core(directory, proc.pid)


def need(*tools: str) -> None:
    """Fail loudly (never skip) when a tool a recipe needs is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"missing tools for this recipe: {', '.join(missing)} (run make test)")


# qemu-user runs another machine's program and, when it dies of a signal,
# writes that machine's core itself: qemu_<prog>_<time>_<pid>.core in its
# working directory, not through core_pattern (and without NT_FILE and
# NT_SIGINFO notes). qemu may then dump its own x86-64 core as well: that
# one goes through core_pattern, into a directory of ours, never the host's.
QEMU = {"aarch64": "qemu-aarch64", "arm": "qemu-arm"}
CROSS_CC = {"aarch64": "aarch64-linux-gnu-gcc", "arm": "arm-linux-gnueabihf-gcc"}
CROSS_ROOT = {"aarch64": Path("/usr/aarch64-linux-gnu"), "arm": Path("/usr/arm-linux-gnueabihf")}


def qemu_crash(arch: str, argv: list[str], directory: Path, *, expect_signal: int | None = None,
               timeout: float = 120.0) -> Path:
    """Run ``argv`` (a program for ``arch``) under qemu-user until it dies
    of a signal and return the core qemu wrote for it."""
    need(QEMU[arch])
    directory.mkdir(parents=True, exist_ok=True)
    before = set(directory.glob("qemu_*.core"))
    cmd = [QEMU[arch], "-L", str(CROSS_ROOT[arch]), *argv]
    with cores_into(directory / "host-cores"):
        proc = subprocess.run(cmd, preexec_fn=allow_cores, cwd=directory, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout)
    shutil.rmtree(directory / "host-cores", ignore_errors=True)
    if proc.returncode >= 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode} under {cmd[0]} instead of crashing: "
                           f"{proc.stderr[-500:]!r}")
    if expect_signal is not None and -proc.returncode != expect_signal:
        raise RuntimeError(f"{argv[0]} died of {signal.Signals(-proc.returncode).name} under {cmd[0]}")
    new = sorted(set(directory.glob("qemu_*.core")) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"{cmd[0]} wrote no core for {argv[0]} in {directory}")
    return new[-1]
