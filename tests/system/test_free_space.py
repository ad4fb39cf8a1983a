"""The analysis decompresses a core into DATA/tmp: with too little room there
it says so in one line, writes nothing, and the bundle waits for a later try.
DATA/tmp is a real, small tmpfs mount."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from collector.spool import is_done
from collector.watch import import_dump
from coretriage.ingest import NoSpaceError
from coretriage.pipeline import process_bundle


@pytest.fixture
def small_tmp(config):
    tmp = config.tmp_dir
    tmp.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(tmp)], check=True)
    try:
        yield tmp
    finally:
        subprocess.run(["umount", "-l", str(tmp)], check=False)


def test_no_room_to_decompress_leaves_the_bundle_for_later(config, store, samples, small_tmp, tmp_path):
    dump = tmp_path / "core.1234"
    shutil.copy(samples("segv").core, dump)
    bundle = import_dump(dump, config.spool_dir)
    core_zst = bundle / "core.zst"

    with pytest.raises(NoSpaceError) as caught:
        process_bundle(config, store, bundle)
    message = str(caught.value)
    assert "\n" not in message and str(small_tmp) in message and "tried again later" in message
    assert not is_done(bundle) and core_zst.is_file() and not store.crash_ids()
    assert list(Path(small_tmp).iterdir()) == []  # nothing half-written left behind

    subprocess.run(["mount", "-o", "remount,size=1g", str(small_tmp)], check=True)
    done = process_bundle(config, store, bundle)
    assert done.new and is_done(bundle) and done.analysis.threads


def test_no_room_for_the_sandbox_copy_is_an_error_not_an_unreadable_core(tmp_path):
    """The analysis sandbox copies the core into its scratch dir: when that
    copy runs out of space the core is not "unreadable" (which would be
    stored as the crash's analysis for good), the analysis fails in one line."""
    from analyzer.analyze import analyze_core
    from analyzer.sandbox import SandboxError, SandboxPolicy

    import os

    core = tmp_path / "core"  # 1 MiB that cannot be sparse: only the copy is under test
    core.write_bytes(b"\x7fELF" + os.urandom(1 << 20))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(scratch)], check=True)
    try:
        with pytest.raises(SandboxError, match="no space to copy"):
            analyze_core(core, sandbox=SandboxPolicy.default(tmp_path / "data", scratch))
    finally:
        subprocess.run(["umount", "-l", str(scratch)], check=False)
