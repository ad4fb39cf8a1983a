"""Small native programs crashed for real, each with the signature it must get.

``RECIPES[name](workdir, variant)`` builds the program (once per workdir)
and crashes it; ``variant`` changes the input, and so the addresses, pids
and heap layout, but never the bug.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import crashkit
from crashkit import Sample


def _build(workdir: Path, source: str, name: str, **kw) -> Path:
    exe = workdir / "bin" / name
    if not exe.exists():
        crashkit.compile_c(source, exe, **kw)
    return exe


def segv(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "segv.c", "segv")
    core = crashkit.crash([str(exe), "GET /" + "x" * variant], workdir / "cores", expect_signal=signal.SIGSEGV)
    return Sample("segv", core, exe, expected_signature="strlen | header_length | parse_request | main",
                  expected_signal="SIGSEGV")


def double_free(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "double_free.c", "double_free")
    core = crashkit.crash([str(exe), "y" * variant], workdir / "cores", expect_signal=signal.SIGABRT)
    return Sample("double_free", core, exe,
                  expected_signature="_int_free | free | session_release | close_connection | main",
                  expected_signal="SIGABRT", extra={"abort_message": "free(): double free detected in tcache 2"})


def assert_balance(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "assert.c", "assert")
    core = crashkit.crash([str(exe), "balance", str(variant)], workdir / "cores", expect_signal=signal.SIGABRT)
    return Sample("assert_balance", core, exe, expected_signal="SIGABRT",
                  expected_signature='check_balance | main | assert(debit == credit && "ledger out of balance")')


def assert_queue(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "assert.c", "assert")
    core = crashkit.crash([str(exe), "queue", str(variant)], workdir / "cores", expect_signal=signal.SIGABRT)
    return Sample("assert_queue", core, exe, expected_signal="SIGABRT",
                  expected_signature="check_queue | main | assert(depth < 16)")


def recursion(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "recursion.c", "recursion")
    core = crashkit.crash([str(exe), str(variant)], workdir / "cores", expect_signal=signal.SIGSEGV)
    return Sample("recursion", core, exe, expected_signature="walk_tree", expected_signal="SIGSEGV")


def thread(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "thread.c", "thread", flags=("-pthread",))
    core = crashkit.crash([str(exe), str(2 + variant)], workdir / "cores", expect_signal=signal.SIGSEGV)
    return Sample("thread", core, exe, expected_signature="handle_job | crashing_worker",
                  expected_signal="SIGSEGV", extra={"threads": 2 + variant + 1})


def cxx_exception(workdir: Path, variant: int = 0) -> Sample:
    exe = _build(workdir, "exception.cpp", "exception", cc="g++")
    core = crashkit.crash([str(exe), str(7 + variant)], workdir / "cores", expect_signal=signal.SIGABRT)
    return Sample("cxx_exception", core, exe, expected_signature="billing::Ledger<T>::total | main",
                  expected_signal="SIGABRT")


def stripped(workdir: Path, variant: int = 0) -> Sample:
    exe = workdir / "bin" / "segv-stripped"
    if not exe.exists():
        crashkit.compile_c("segv.c", exe)
        subprocess.run(["strip", "--strip-all", str(exe)], check=True)
    core = crashkit.crash([str(exe), "GET /" + "z" * variant], workdir / "cores", expect_signal=signal.SIGSEGV)
    # no symbols: frames are module+offset, stable across runs of one build
    return Sample("stripped", core, exe, expected_signal="SIGSEGV",
                  expected_prefix=r"strlen \| segv-stripped\+0x[0-9a-f]+ \| segv-stripped\+0x[0-9a-f]+")


def musl(workdir: Path, variant: int = 0) -> Sample:
    crashkit.need("musl-gcc")
    exe = _build(workdir, "musl.c", "musl", cc="musl-gcc", flags=("-static",))
    core = crashkit.crash([str(exe), "p" * (variant + 1)], workdir / "cores", expect_signal=signal.SIGSEGV)
    return Sample("musl", core, exe, expected_signature="memcpy | compress_block | main",
                  expected_signal="SIGSEGV", extra={"libc": "musl"})


def reraise(workdir: Path, variant: int = 0) -> Sample:
    """A program whose own SIGSEGV handler sends the signal to itself: the
    core holds the handler, and the fault it was handed in its signal frame."""
    exe = _build(workdir, "reraise.c", "reraise")
    argv = [str(exe)] + ["x"] * (variant % 2)
    core = crashkit.crash(argv, workdir / "cores", expect_signal=signal.SIGSEGV)
    return Sample("reraise", core, exe, expected_signature="lookup_key | main", expected_signal="SIGSEGV")


RECIPES = {f.__name__: f for f in (segv, double_free, assert_balance, assert_queue, recursion, thread,
                                   cxx_exception, stripped, musl, reraise)}
