"""Crash storms: one user crashing on purpose, again and again.

- Renamed copies: the rate limit counts by build (build-id, else a hash of
  the content), container and user, not by path, so 30 copies of one binary
  under 30 names crashing within a minute keep ``rate_limit`` cores between
  them; every crash is still recorded, the rest with their stack core.
- A storm of one program: past ``rate_limit`` each crash keeps its stack
  core while ``stack_rate_limit`` allows, then its metadata only; every
  crash is analyzed into the one group its real backtrace names.
- Many builds: ``host_rate_limit`` caps the cores kept over the whole host,
  whatever each build's own budget.
- Eviction race: a crash that needs room in the spool must not take the core
  another handler is still writing (the writer's lock on its bundle).

Real kernel, real handler (``host-setup install``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import zstandard

import crashkit
from collector.policy import CapturePolicy
from collector.spool import read_meta, unfinished_bundles
from handlerkit import bundle_of, crash
from waiting import wait_for

VARIANT = r"""
int main(void)
{
    static const char build[] = "variant " VARIANT;  /* a different build-id for each */
    return *(volatile int *)0 + build[0];
}
"""


# the rate limits' window in these tests: the crashes of one test all fall in
# it however slow the machine (the default 60 s is outlasted by 30 crashes one
# after another on a loaded CI machine, and a new window keeps more cores)
WINDOW = 3600


@pytest.fixture(scope="module")
def segv(tmp_path_factory) -> Path:
    return crashkit.compile_c("segv.c", tmp_path_factory.mktemp("bin") / "segv")


def test_renamed_copies_share_one_budget(collector_installed, segv, tmp_path):
    spool = collector_installed / "spool"
    (collector_installed / "collector.toml").write_text(f"rate_window = {WINDOW}\n")
    limit = CapturePolicy().rate_limit  # default limits, over WINDOW
    names = []
    for i in range(30):
        copy = tmp_path / f"renamed-{i:02d}"
        shutil.copy(segv, copy)
        names.append(copy)
    start = time.monotonic()
    pids = [crash([str(exe), "GET /"], env={"PATH": "/usr/bin"})[0] for exe in names]
    took = time.monotonic() - start
    metas = [read_meta(bundle_of(spool, pid)) for pid in pids]
    kept = [m for m in metas if m.core_file]
    print(f"\n30 renamed copies crashed within {took:.1f} s: {len(kept)} cores kept, "
          f"{len(metas) - len(kept)} crashes recorded without their core")
    assert len(metas) == 30 and {m.exe for m in metas} == {str(n) for n in names}  # every crash recorded
    assert len(kept) == limit and [m.core_file for m in metas[:limit]] == ["core.zst"] * limit
    for m in metas[limit:]:
        # past the limit: the stack core only (stack_rate_limit, 30 by default, allows them all)
        assert m.dropped == f"rate limit: {limit} cores of this build per {WINDOW} s" and m.core_kind == "stack"
        assert sorted(os.listdir(spool / m.id)) == ["files.json", "meta.json", "root", "stack.zst"]


def test_host_wide_cap_over_different_builds(collector_installed, tmp_path):
    (collector_installed / "collector.toml").write_text(f"host_rate_limit = 3\nrate_window = {WINDOW}\n")
    src = tmp_path / "variant.c"
    src.write_text(VARIANT)
    builds = []
    for i in range(5):
        exe = tmp_path / f"variant{i}"
        subprocess.run(["gcc", f'-DVARIANT="{i}"', "-o", str(exe), str(src)], check=True, capture_output=True)
        builds.append(exe)
    ids = {subprocess.run(["readelf", "-n", str(b)], capture_output=True, text=True).stdout.split("Build ID:")[1]
           .split()[0] for b in builds}
    assert len(ids) == 5  # five builds, each well within its own rate_limit
    metas = [read_meta(bundle_of(collector_installed / "spool", crash([str(b)])[0])) for b in builds]
    assert [m.core_file for m in metas] == ["core.zst"] * 3 + [None] * 2
    assert [m.core_kind for m in metas] == ["full"] * 3 + ["stack"] * 2
    assert {m.dropped for m in metas[3:]} == {f"rate limit: 3 cores on this host per {WINDOW} s (host_rate_limit)"}


def test_eviction_passes_over_a_core_being_written(collector_installed, tmp_path):
    """A big crash is being written; a second crash needs room (every core is
    over max_spool_use) and evicts what it can: never the core in progress."""
    spool = collector_installed / "spool"
    # the big core's budget outlasts the pause below, however slow the machine
    (collector_installed / "collector.toml").write_text('max_spool_use = "1K"\nmax_core_seconds = 600\n')
    bigmem = crashkit.compile_c("bigmem.c", tmp_path / "bigmem", flags=("-O2",))
    segv = crashkit.compile_c("segv.c", tmp_path / "segv")
    big = subprocess.Popen([str(bigmem), "768", "random"], preexec_fn=crashkit.allow_cores,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stopped = []
    try:
        writing = wait_for(lambda: next((b for b in unfinished_bundles(spool) if (b / "core.zst").exists()), None),
                           "the big core being written", timeout=120)
        # its writer paused until the second crash is recorded: on a loaded machine the
        # second handler could otherwise start after the big core was finished
        stopped = wait_for(lambda: _holding(writing), "the handler writing the big core")
        for writer in stopped:
            os.kill(writer, signal.SIGSTOP)
        pid, _ = crash([str(segv)])
        second = read_meta(bundle_of(spool, pid))
        assert not (writing / "meta.json").exists(), "the big core was written before the race could happen"
        for writer in stopped:
            os.kill(writer, signal.SIGCONT)
        assert big.wait(timeout=120) == -11
    finally:
        for writer in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGCONT)
        if big.poll() is None:
            big.kill()
            big.wait()
    first = read_meta(bundle_of(spool, big.pid, timeout=120))
    assert first.id == writing.name and second.core_file == "core.zst"
    assert not any(first.id in p for p in second.problems), second.problems
    assert not (writing / "evicted").exists()
    assert first.core_file == "core.zst" and first.stopped_reading is None and first.dropped is None
    with open(writing / "core.zst", "rb") as f:
        size = sum(len(chunk) for chunk in zstandard.ZstdDecompressor().read_to_iter(f))
    assert size == first.core_size  # whole: nobody took it from under its writer


def _holding(directory: Path) -> list[int]:
    """The processes with ``directory`` open (a handler holds its bundle's fd until meta.json)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{entry}/fd/{fd}") == str(directory)
                       for fd in os.listdir(f"/proc/{entry}/fd")):
                    found.append(int(entry))
    return found


def test_storm_of_one_program_lands_in_one_named_group(collector_installed, segv):
    """rate_limit = 1, 20 crashes within one rate_window (WINDOW): one full core, then
    stack cores (stack_rate_limit, 30 by default, allows them all; past it
    the metadata only, tests/system/test_handler.py); all 20 analyzed into
    the same group under the program's real function names."""
    import json

    from collecting import collecting
    from hostfixtures import cli

    spool = collector_installed / "spool"
    (collector_installed / "collector.toml").write_text(f"rate_limit = 1\nrate_window = {WINDOW}\n")
    start = time.monotonic()
    procs = []
    for _ in range(20):  # 40 ms apart: at once, more than core_pipe_limit would be skipped by the kernel
        procs.append(subprocess.Popen([str(segv), "GET /"], preexec_fn=crashkit.allow_cores, env={},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.04)
    assert [p.wait(timeout=60) for p in procs] == [-11] * 20
    took = time.monotonic() - start
    metas = [read_meta(bundle_of(spool, p.pid)) for p in procs]
    kinds = sorted(m.core_kind for m in metas)
    print(f"\n20 crashes in {took:.2f} s: {kinds.count('full')} full, {kinds.count('stack')} stack, "
          f"{kinds.count('none')} none")
    assert kinds == ["full"] + ["stack"] * 19

    with collecting(collector_installed) as (_, store):
        deadline = time.monotonic() + 360  # 20 analyses, on a loaded machine
        while time.monotonic() < deadline and sum(g.count for g in store.groups()) < 20:
            time.sleep(0.2)
    groups = json.loads(cli(collector_installed, "list", "--json").stdout)
    signature = "strlen | header_length | parse_request | main"
    assert [(g["signature"], g["count"]) for g in groups] == [(signature, 20)]
    shown = [json.loads(cli(collector_installed, "show", c.id, "--json").stdout)
             for g in store.groups() for c in store.crashes_of(g.id)]
    assert sorted(s["core_kind"] for s in shown) == kinds
    for s in shown:
        if s["core_kind"] == "stack":
            assert s["signature"] == signature and 0 < s["core_size"] < 1 << 20
            assert s["meta"]["core_kind_reason"].startswith("stack-only core")
        elif s["core_kind"] == "full":
            assert s["core_size"] > s["meta"]["stack_core_size"] and s["signature"] == signature
    store.close()
