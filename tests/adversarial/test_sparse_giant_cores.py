"""Sparse giant cores: a process maps 64 GiB it never touches and crashes.

Once a single page of it is written, the kernel dumps the whole mapping,
every untouched page as zeros: 64 GiB through the pipe, for 4 KiB of memory. With ``kernel.core_pipe_limit`` > 0 the kernel
holds the process until the handler closes the pipe, and 16 such crashes
would hold every slot. The handler must stop reading at ``max_core_size``
(or read on for the stack core, whose stacks are at the end) or once its
wall-clock budget (``max_core_seconds``) is spent, close the pipe
(which releases the process), and still record the crash, saying why the
core is partial and how much was read. Real kernel, real handler
(``host-setup install``, which sets core_pipe_limit).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import zstandard

import crashkit
from collector.policy import CapturePolicy
from collector.spool import read_meta
from handlerkit import bundle_of, core_pipe_limit, crash
from waiting import wait_for

GIB = 1 << 30
SLACK = 15.0  # seconds past the budget: start-up, /proc, the files, a loaded CI machine

SPARSE = r"""
#include <stdlib.h>
#include <sys/mman.h>
int main(int argc, char **argv)
{
    size_t gib = (size_t)atol(argv[1]);
    char *p = mmap(NULL, gib << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return 2;
    p[0] = 1;  /* one page: the kernel now dumps the whole mapping, the rest as zeros it never allocates */
    return *(volatile int *)0 + p[0];
}
"""


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("sparse") / "sparse.c"
    src.write_text(SPARSE)
    exe = src.with_suffix("")
    subprocess.run(["gcc", "-O0", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def pipe_limit() -> int:
    return int(Path("/proc/sys/kernel/core_pipe_limit").read_text())


def head_of(core_zst: Path, size: int) -> bytes:
    with open(core_zst, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read(size)


def test_64_gib_sparse_crash_with_default_limits(collector_installed, sparse):
    assert pipe_limit() > 0  # the kernel waits for the handler: the case that starves capture
    assert not (collector_installed / "collector.toml").exists()  # default limits
    default = CapturePolicy()
    pid, held = crash([str(sparse), "64"])
    print(f"\n64 GiB sparse crash, default limits: the process was held {held:.1f} s")
    assert held < default.max_core_seconds + SLACK, f"held {held:.1f} s"
    meta = read_meta(bundle_of(collector_installed / "spool", pid, timeout=60))
    assert meta.stopped_reading in (f"max_core_size reached ({default.max_core_size} bytes)",
                                    f"wall-clock budget spent (max_core_seconds = {default.max_core_seconds:g})")
    bundle = collector_installed / "spool" / meta.id
    if meta.core_kind == "stack":  # read on past max_core_size, within the budget, for the stacks at the end
        assert meta.dropped == f"over max_core_size ({default.max_core_size} bytes): the stack core is kept"
        assert not (bundle / "core.zst").exists() and head_of(bundle / "stack.zst", 4) == b"\x7fELF"
        assert meta.stack_core_size < 8 << 20
    else:  # the budget ended first: the first part of the full core, its notes complete
        assert default.max_core_size // 4 < meta.core_size < 64 * GIB
        assert meta.dropped is None and meta.core_file == "core.zst"
        assert head_of(bundle / "core.zst", 4) == b"\x7fELF"


def test_budget_stops_reading_and_releases_the_process(collector_installed, sparse):
    (collector_installed / "collector.toml").write_text('max_core_seconds = 3\nmax_core_size = "1T"\n')
    pid, held = crash([str(sparse), "64"])
    assert pipe_limit() > 0
    assert 2 < held < 3 + SLACK, f"held {held:.1f} s"
    meta = read_meta(bundle_of(collector_installed / "spool", pid, timeout=60))
    assert meta.stopped_reading == "wall-clock budget spent (max_core_seconds = 3)"
    assert 0 < meta.core_size < 64 * GIB and meta.handler_seconds < 3 + SLACK
    assert meta.core_file == "core.zst" and meta.dropped is None
    assert meta.exe == str(sparse) and meta.signal == 11


def test_giant_crashes_in_every_slot_are_all_released(collector_installed, sparse, tmp_path):
    """As many giant crashes at once as core_pipe_limit has slots (the kernel
    skips any crash beyond them, unrecorded): each is released within its
    budget, so the slots are soon free and the next crash is captured whole.
    16 slots here: host-setup's 128 would be 128 handlers reading at once on
    a 2-CPU test machine, a test of the machine rather than of the budget."""
    (collector_installed / "collector.toml").write_text(  # no rate limit: every core is read
        'max_core_seconds = 3\nmax_core_size = "1T"\nrate_limit = 100\nhost_rate_limit = 100\n')
    with core_pipe_limit(16):
        _fill_every_slot(collector_installed, sparse, tmp_path)


def _fill_every_slot(collector_installed, sparse, tmp_path):
    slots = pipe_limit()
    start = time.monotonic()
    procs = [subprocess.Popen([str(sparse), "64"], preexec_fn=crashkit.allow_cores,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(slots)]
    codes = [p.wait(timeout=300) for p in procs]
    took = time.monotonic() - start
    print(f"\n{slots} giant crashes at once (max_core_seconds = 3): all released after {took:.1f} s")
    assert codes == [-11] * slots
    assert took < 3 + 2 * SLACK, f"{slots} giant crashes held their slots {took:.1f} s"
    for p in procs:
        meta = read_meta(bundle_of(collector_installed / "spool", p.pid, timeout=60))
        assert meta.stopped_reading == "wall-clock budget spent (max_core_seconds = 3)"
    segv = crashkit.compile_c("segv.c", tmp_path / "segv")
    pid, held = crash([str(segv)])  # an ordinary crash after them: a free slot, read to the end
    meta = read_meta(bundle_of(collector_installed / "spool", pid))
    assert held < SLACK and meta.stopped_reading is None and meta.core_file == "core.zst"


def test_crashes_the_kernel_skipped_are_counted_by_doctor(collector_installed, sparse):
    """More crashes at once than core_pipe_limit: the kernel runs no handler
    for the rest and says so only in its log. doctor finds them there: a FAIL
    that names how many, not silence."""
    from collector.hostsetup import kmsg
    from collector.hostsetup.doctor import run_checks

    (collector_installed / "collector.toml").write_text(
        'max_core_seconds = 3\nmax_core_size = "1T"\nrate_limit = 100\nhost_rate_limit = 100\n')
    assert kmsg.skipped_dumps() is not None, "root reads /dev/kmsg"
    seen = _kernel_log()[-1][0]  # the log holds older skips (other tests), and drops its oldest records
    with core_pipe_limit(1):
        first = subprocess.Popen([str(sparse), "64"], preexec_fn=crashkit.allow_cores)
        # it holds the one slot (for its 3 s budget) once the kernel has begun its dump
        wait_for(lambda: "CoreDumping:\t1" in _status(first.pid), "the first crash dumping", 60)
        rest = [subprocess.Popen([str(sparse), "64"], preexec_fn=crashkit.allow_cores) for _ in range(3)]
        assert [p.wait(timeout=120) for p in (first, *rest)] == [-11] * 4
        new = [text for seq, text in _kernel_log() if seq > seen]
        check = {c.name: c for c in run_checks(collector_installed, docker=None, clock=None)}["core_pipe_limit"]
    assert kmsg.count_skipped(new) == 3, new
    skipped = {int(line.split("coredump: ", 1)[1].split("(", 1)[0]) for line in new if kmsg.SKIPPED in line}
    assert skipped == {p.pid for p in rest}
    assert check.status == "FAIL" and "kernel.core_pipe_limit (1)" in check.message, check
    assert check.fix.startswith("sysctl kernel.core_pipe_limit=128")
    bundle_of(collector_installed / "spool", first.pid, timeout=60)  # the one in the slot was captured

def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def _kernel_log() -> list[tuple[int, str]]:
    """/dev/kmsg's records as (sequence number, text)."""
    import errno
    import os

    records = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode("utf-8", "replace")
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while read: on with the next
                    continue
                if exc.errno == errno.EAGAIN:
                    break
                raise
            head, _, text = record.partition(";")
            records.append((int(head.split(",")[1]), text.split("\n", 1)[0]))
    finally:
        os.close(fd)
    return records


def test_partial_core_still_analyzed(collector_installed, sparse):
    """The part kept holds the notes: gdb still names the signal and the
    crashing thread's place, and the analysis says the core is truncated."""
    from analyzer.problems import TRUNCATED_CORE
    from coretriage.config import load_config
    from coretriage.wiring import Wiring

    # stack_cores = false: else reading goes on past max_core_size for the stacks (a stack core is kept)
    (collector_installed / "collector.toml").write_text('max_core_size = "1M"\nstack_cores = false\n')
    pid, held = crash([str(sparse), "64"])
    assert held < SLACK
    bundle = bundle_of(collector_installed / "spool", pid)
    meta = read_meta(bundle)
    assert meta.stopped_reading == f"max_core_size reached ({1 << 20} bytes)" and meta.core_file == "core.zst"
    wiring = Wiring(load_config(collector_installed))
    try:
        done = wiring.process_bundle(bundle)
    finally:
        wiring.close()
    assert done.analysis.signal.name == "SIGSEGV"
    assert TRUNCATED_CORE in {p.code for p in done.analysis.problems}
    assert done.crash.meta["stopped_reading"] == meta.stopped_reading  # the record says why
