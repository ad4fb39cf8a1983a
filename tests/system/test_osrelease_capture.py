"""The crashed root's os-release goes with the bundle and is shown: a
program crashed for real through the kernel's pipe handler inside a
chroot whose os-release says Alpine, on a Debian host; the crash's export
and its JSON say Alpine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from collector.corepattern import core_pattern, pattern_lock, read_pattern, swapped
from collector.spool import read_meta
from coretriage.config import load_config
from coretriage.pipeline import process_bundle
from coretriage.reports import crash_report
from coretriage.store import Store
from handlerkit import bundle_of, crash

PYTHON = sys.executable
SEGV = "int main(void) { volatile int *p = 0; return *p; }\n"


def test_the_chroots_os_release_is_recorded_and_shown(data_dir, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n')
    src = tmp_path / "segv.c"
    src.write_text(SEGV)
    subprocess.run(["musl-gcc", "-static", "-g", "-o", str(root / "segv"), str(src)], check=True)

    def enter():
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
        os.chroot(root)
        os.chdir("/")

    with pattern_lock():
        before = read_pattern()
        try:
            with swapped(core_pattern(PYTHON, data_dir=str(data_dir)), lock=False):
                pid, _ = crash(["/segv"], preexec_fn=enter)
                bundle = bundle_of(data_dir / "spool", pid)
        finally:
            assert read_pattern() == before
    meta = read_meta(bundle)
    assert meta.os_release == {"ID": "alpine", "VERSION_ID": "3.19.1", "PRETTY_NAME": "Alpine Linux v3.19"}

    config = load_config(data_dir)
    store = Store(config.database_url)
    try:
        done = process_bundle(config, store, bundle)
        row = store.crash(done.crash.id)
        assert "OS" in crash_report(row, "text") and "Alpine Linux v3.19" in crash_report(row, "text")
        assert json.loads(crash_report(row, "json"))["os"] == "Alpine Linux v3.19"
    finally:
        store.close()
