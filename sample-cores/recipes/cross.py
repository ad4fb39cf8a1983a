"""The same sample programs built for aarch64 and 32-bit ARM (Debian's cross
compilers) and crashed under qemu-user, which writes a real core of that
machine: the analysis of another machine's crash, on this one.

``RECIPES[name](workdir)`` returns a ``Sample``. The dynamic builds are
linked without PIE: a qemu core has no NT_FILE note and leaves the
program's read-only pages out, so gdb could not find where a PIE was
loaded (a kernel's core on a real ARM host has both, PIE or not). Their
libraries come from the cross C library's tree, given as the sysroot.
"""

from __future__ import annotations

import signal
from pathlib import Path

import crashkit
from crashkit import Sample


def _build(workdir: Path, arch: str, source: str, name: str, static: bool) -> Path:
    exe = workdir / "bin" / arch / name
    if not exe.exists():
        crashkit.need(crashkit.CROSS_CC[arch])
        crashkit.compile_c(source, exe, cc=crashkit.CROSS_CC[arch], flags=("-static",) if static else ("-no-pie",))
    return exe


def _crash(workdir: Path, arch: str, exe: Path, args: list[str], sig: int) -> Path:
    return crashkit.qemu_crash(arch, [str(exe), *args], workdir / "cores" / arch, expect_signal=sig)


def segv(arch: str, static: bool = True):
    def make(workdir: Path, variant: int = 0) -> Sample:
        name = f"segv-{'static' if static else 'dynamic'}"
        exe = _build(workdir, arch, "segv.c", name, static)
        core = _crash(workdir, arch, exe, ["GET /" + "x" * variant], signal.SIGSEGV)
        # aarch64's dynamic libc names no __strlen_* (no .symtab, no -dbg package); arm's strlen is exported
        expected = ("strlen | " if static or arch == "arm" else "") + "header_length | parse_request | main"
        return Sample(f"{arch}-{name}", core, exe, expected_signature=expected, expected_signal="SIGSEGV",
                      sysroot=None if static else crashkit.CROSS_ROOT[arch], extra={"arch": arch})
    return make


def assert_balance(arch: str):
    def make(workdir: Path, variant: int = 0) -> Sample:
        exe = _build(workdir, arch, "assert.c", "assert-static", True)
        core = _crash(workdir, arch, exe, ["balance", str(variant)], signal.SIGABRT)
        return Sample(f"{arch}-assert", core, exe, expected_signal="SIGABRT",
                      expected_signature='check_balance | main | assert(debit == credit && "ledger out of balance")',
                      extra={"arch": arch})
    return make


def recursion(arch: str):
    def make(workdir: Path, variant: int = 0) -> Sample:
        exe = _build(workdir, arch, "recursion.c", "recursion-static", True)
        core = _crash(workdir, arch, exe, [str(variant)], signal.SIGSEGV)
        return Sample(f"{arch}-recursion", core, exe, expected_signature="walk_tree",
                      expected_signal="SIGSEGV", extra={"arch": arch})
    return make


RECIPES = {
    "aarch64-segv-static": segv("aarch64"),
    "aarch64-segv-dynamic": segv("aarch64", static=False),
    "aarch64-assert": assert_balance("aarch64"),
    "aarch64-recursion": recursion("aarch64"),
    "arm-segv-static": segv("arm"),
    "arm-segv-dynamic": segv("arm", static=False),
    "arm-assert": assert_balance("arm"),
    "arm-recursion": recursion("arm"),
}
