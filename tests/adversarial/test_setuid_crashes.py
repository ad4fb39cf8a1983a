"""Set-uid and non-dumpable crashes: the kernel dumps them only because
``fs.suid_dumpable=2``, with dump mode 2 (``%d``), and makes such a core
root-only: it holds a privileged process's memory. coretriage keeps them to
that policy: by default (``setuid_cores = "analyze-then-delete"``) the core is
kept only until it is analyzed, then deleted, and the record says why;
``drop`` never reads it; ``keep`` keeps it like any other.

A real set-uid root binary run by ``nobody`` crashes under the real kernel
and the real handler (``host-setup install``); the real pipeline analyzes
the bundle with gdb.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import crashkit
from collector.spool import read_meta
from coretriage.config import load_config
from coretriage.wiring import Wiring
from handlerkit import bundle_of, crash

SUID_DUMPABLE = Path("/proc/sys/fs/suid_dumpable")
REASON = "set-uid or non-dumpable process (dump mode 2, a root-only core): setuid_cores = "


@pytest.fixture
def suid_dumpable_2():
    old = SUID_DUMPABLE.read_text()
    SUID_DUMPABLE.write_text("2\n")
    try:
        yield
    finally:
        SUID_DUMPABLE.write_text(old)
        assert SUID_DUMPABLE.read_text() == old


@pytest.fixture(scope="module")
def setuid_segv():
    """segv, owned by root and set-uid, in a directory ``nobody`` can reach."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the set-uid binary as nobody")
    where = Path(tempfile.mkdtemp(prefix="ct-suid-", dir="/tmp"))
    try:
        where.chmod(0o755)
        exe = crashkit.compile_c("segv.c", where / "segv-suid")
        os.chown(exe, 0, 0)
        exe.chmod(0o4755)
        yield exe
    finally:
        shutil.rmtree(where, ignore_errors=True)


def as_nobody(exe: Path) -> list[str]:
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", str(exe), "GET /"]


def analyze(data_dir: Path, bundle: Path):
    wiring = Wiring(load_config(data_dir))
    try:
        done = wiring.process_bundle(bundle)
        return done, wiring.store.crash(done.crash.id)
    finally:
        wiring.close()


def test_setuid_core_analyzed_then_deleted(collector_installed, suid_dumpable_2, setuid_segv):
    assert not (collector_installed / "collector.toml").exists()  # the default policy
    pid, _ = crash(as_nobody(setuid_segv))
    bundle = bundle_of(collector_installed / "spool", pid)
    meta = read_meta(bundle)
    assert meta.dump_mode == 2 and meta.uid == 65534 and meta.exe == str(setuid_segv)
    assert meta.delete_core_after_analysis == REASON + "analyze-then-delete"
    assert meta.core_file == "core.zst" and (bundle / "core.zst").is_file()  # only until it is analyzed
    assert (bundle / "stack.zst").is_file()  # its stack-only core too

    done, row = analyze(collector_installed, bundle)
    assert done.analysis.signal.name == "SIGSEGV" and "header_length" in done.signature.text  # analyzed with gdb
    assert row.core_file is None  # ... and then gone
    assert not (bundle / "core.zst").exists()
    assert row.meta["dump_mode"] == 2 and row.meta["delete_core_after_analysis"] == REASON + "analyze-then-delete"
    assert not any(collector_installed.rglob("*.core.zst")) and not any(collector_installed.rglob("core.zst"))
    assert not any(collector_installed.rglob("stack.zst"))  # the stack core goes with it


def test_setuid_core_dropped_unread(collector_installed, suid_dumpable_2, setuid_segv):
    (collector_installed / "collector.toml").write_text('setuid_cores = "drop"\n')
    pid, _ = crash(as_nobody(setuid_segv))
    meta = read_meta(bundle_of(collector_installed / "spool", pid))
    assert meta.dump_mode == 2 and meta.dropped == REASON + "drop"
    assert meta.core_size == 0 and meta.stopped_reading == "core dropped before reading"
    assert meta.core_file is None and meta.delete_core_after_analysis is None
    assert os.listdir(collector_installed / "spool" / meta.id) == ["meta.json"]


def test_setuid_core_kept_when_the_admin_says_so(collector_installed, suid_dumpable_2, setuid_segv):
    (collector_installed / "collector.toml").write_text('setuid_cores = "keep"\n')
    pid, _ = crash(as_nobody(setuid_segv))
    bundle = bundle_of(collector_installed / "spool", pid)
    meta = read_meta(bundle)
    assert meta.dump_mode == 2 and meta.delete_core_after_analysis is None and meta.core_file == "core.zst"
    _, row = analyze(collector_installed, bundle)
    assert row.core_file and (collector_installed / row.core_file).is_file()


def test_ordinary_crash_of_the_same_user_keeps_its_core(collector_installed, suid_dumpable_2, tmp_path):
    plain = crashkit.compile_c("segv.c", Path(tempfile.mkdtemp(prefix="ct-plain-", dir="/tmp")) / "segv")
    try:
        plain.parent.chmod(0o755)
        pid, _ = crash(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", str(plain)])
        bundle = bundle_of(collector_installed / "spool", pid)
        meta = read_meta(bundle)
        assert meta.dump_mode == 1 and meta.delete_core_after_analysis is None
        _, row = analyze(collector_installed, bundle)
        assert row.core_file and (collector_installed / row.core_file).is_file()
    finally:
        shutil.rmtree(plain.parent, ignore_errors=True)
