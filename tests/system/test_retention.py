"""Retention on real bundles from the real kernel handler, real captured
files and a real store: what no stored crash needs goes, by itself in the
collector daemon; what a stored crash or a waiting bundle needs stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import crashkit
from collector.pruning import RetentionLimits, prune
from collector.spool import finished_bundles, read_meta
from collector.sysroot import read_manifest
from coretriage.config import load_config
from coretriage.ingest import reprocess
from coretriage.pipeline import process_bundle, retention_loop, retention_references
from coretriage.store import Store
from waiting import wait_for

PROGRAM = '#include <stdio.h>\nint main(void) {{ puts("build {n}"); return *(volatile int *)0; }}\n'
DAY = 86400


def _program(tmp_path: Path, n: int) -> Path:
    src = tmp_path / f"app{n}.c"
    src.write_text(PROGRAM.format(n=n))
    exe = tmp_path / f"app{n}"
    subprocess.run(["gcc", "-g", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def _crash(spool: Path, exe: Path) -> Path:
    proc = subprocess.Popen([str(exe)], preexec_fn=crashkit.allow_cores, stdout=subprocess.DEVNULL)
    assert proc.wait(timeout=60) == -11
    return wait_for(lambda: next((b for b in finished_bundles(spool) if read_meta(b).pid == proc.pid), None),
                    f"the bundle of pid {proc.pid}", 30)


def _backdate(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when), follow_symlinks=False)


def _age_everything(data: Path, days: float) -> None:
    for bundle in (data / "spool").iterdir():
        if (bundle / "done").exists():
            _backdate(bundle / "done", days)
    for f in (data / "files" / "sha256").iterdir():
        _backdate(f, days)


def test_retention_keeps_what_stored_crashes_and_waiting_bundles_need(collector_installed, tmp_path):
    data = collector_installed
    config = load_config(data)
    kept, forgotten, waiting = (_crash(config.spool_dir, _program(tmp_path, n)) for n in (1, 2, 3))
    files = {name: read_manifest(b) for name, b in (("kept", kept), ("forgotten", forgotten), ("waiting", waiting))}
    exe_key = {name: next(v for k, v in f.items() if "/app" in k) for name, f in files.items()}
    libc = next(v for k, v in files["kept"].items() if k.endswith("libc.so.6"))
    store = Store(config.database_url)
    try:
        first = process_bundle(config, store, kept)
        second = process_bundle(config, store, forgotten)
        (data / second.crash.core_file).unlink()  # what `coretriage prune --keep N` does to an old core
        store.forget_core(second.crash.id)
        assert first.crash.meta["files"] == files["kept"]
        _age_everything(data, 30)

        done = prune(data, retention_references(config, store), RetentionLimits())
        sha = data / "files" / "sha256"
        assert set(done.bundles) == {kept.name, forgotten.name} and waiting.is_dir()
        assert (sha / exe_key["kept"]).is_file() and (sha / libc).is_file()  # a stored crash needs them
        assert not (sha / exe_key["forgotten"]).exists()  # its crash has no core any more
        assert (sha / exe_key["waiting"]).is_file()  # not analyzed yet
        assert done.files == (f"sha256/{exe_key['forgotten']}",)

        # the crash whose bundle went is analyzed again from its files, by content
        before = store.crash(first.crash.id).analysis
        assert reprocess(config, store)["crashes"] == 2
        after = store.crash(first.crash.id).analysis
        exe_module = next(m for m in after["modules"] if m["path"].endswith("/app1"))
        assert exe_module["found_at"] == str(sha / exe_key["kept"])
        assert [f["function"] for f in after["threads"][0]["frames"]] == \
            [f["function"] for f in before["threads"][0]["frames"]]
    finally:
        store.close()


def test_over_max_size_the_oldest_unneeded_go_first(collector_installed, tmp_path):
    data = collector_installed
    config = load_config(data)
    bundles = [_crash(config.spool_dir, _program(tmp_path, n)) for n in (1, 2, 3)]
    store = Store(config.database_url)
    try:
        crashes = [process_bundle(config, store, b).crash for b in bundles]
        for crash in crashes[:2]:  # the two oldest lose their cores; the newest keeps it
            (data / crash.core_file).unlink()
            store.forget_core(crash.id)
        for age, bundle in zip((3, 2, 1), bundles):  # hours: past the grace, far from max_age
            _backdate(bundle / "done", age / 24)
            for digest in read_manifest(bundle).values():
                _backdate(data / "files" / "sha256" / digest, age / 24)
        refs = retention_references(config, store)
        everything = prune(data, refs, RetentionLimits(max_size=1 << 50))
        assert everything.bundles == () and everything.files == ()
        done = prune(data, refs, RetentionLimits(max_size=everything.total - 1))
        assert done.bundles == (bundles[0].name,)  # the oldest bundle alone was enough
        done = prune(data, refs, RetentionLimits(max_size=0))  # nothing unneeded may stay
        assert set(done.bundles) == {bundles[1].name, bundles[2].name}
        left = {p.name for p in (data / "files" / "sha256").iterdir()}
        assert left == set(read_manifest_of(crashes[2]).values())  # exactly what the stored core needs
        assert done.over > 0
    finally:
        store.close()


def _a_stale_and_a_fresh_file(data: Path) -> tuple[Path, Path]:
    """Retention every second with max_age 1 day; a captured file no crash
    needs, two days old, and one captured a minute ago."""
    (data / "collector.toml").write_text('[retention]\ninterval = "1s"\nmax_age = "1d"\n')
    stale = data / "files" / "sha256" / ("ab" * 32)
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x7fELF left by a crash whose core is gone")
    _backdate(stale, 2)
    fresh = stale.with_name("cd" * 32)
    fresh.write_bytes(b"\x7fELF captured a minute ago")
    return stale, fresh


def read_manifest_of(crash) -> dict:
    return crash.meta["files"]


def test_the_collector_daemon_prunes_by_itself(collector_installed, tmp_path):
    data = collector_installed
    stale, fresh = _a_stale_and_a_fresh_file(data)
    daemon = subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data), "collector", "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: not stale.exists(), "the collector daemon's retention pass", 60)
        assert fresh.exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=30)
    assert "retention: removed 0 done bundles and 1 captured files" in out, out


def test_copies_a_killed_analysis_left_in_tmp_go_once_stale(tmp_path):
    # a daemon killed mid-analysis leaves its decompressed core and the sandbox's copy behind
    from collector.pruning import References

    data = tmp_path / "data"
    tmp = data / "tmp"
    stale, fresh, other = tmp / "core-old", tmp / "sandbox-now", tmp / "keep-me"
    for d in (stale, fresh, other):
        d.mkdir(parents=True)
        (d / "core").write_bytes(b"secret memory")
    old = time.time() - 7 * 3600
    for d in (stale, other):
        os.utime(d, (old, old))
    prune(data, References(files=frozenset(), bundles=frozenset()), RetentionLimits())
    assert not stale.exists() and fresh.exists() and other.exists()


def test_the_central_server_prunes_its_spool_once_per_pass(tmp_path):
    """A central server has no collector daemon: `coretriage web` prunes
    what hosts uploaded, under gunicorn with two workers sharing the data
    dir: the stale file is removed and reported once, the fresh one kept.
    (That the workers take turns, DATA/retention.lock, only saves a second
    scan: a second remover would find the file gone and report nothing.)"""
    from webserver import cli, web_server

    data = tmp_path / "central"
    cli(data, "db", "upgrade")
    stale, fresh = _a_stale_and_a_fresh_file(data)
    log = tmp_path / "web.log"
    with web_server(data, log, args=("--workers", "2")):
        wait_for(lambda: not stale.exists(), "the central server's retention pass", 60)
        time.sleep(3)  # both workers have made passes by now
        assert fresh.exists()
    assert log.read_text().count("retention: removed 0 done bundles and 1 captured files") == 1, log.read_text()


class _OnePass:
    """A stop event for retention_loop that ends it after its first turn."""

    def __init__(self):
        self.done = False

    def is_set(self) -> bool:
        return self.done

    def wait(self, _timeout=None) -> bool:
        self.done = True
        return True


def test_processes_sharing_a_data_dir_make_one_pass_per_interval(tmp_path):
    """Each gunicorn worker runs the retention thread. A pass any of them
    made counts for all until its interval is over (its time is kept in
    DATA/retention.lock), so a worker that starts later does not scan every
    stored crash again."""
    from webserver import cli

    data = tmp_path / "central"
    cli(data, "db", "upgrade")
    stale, fresh = _a_stale_and_a_fresh_file(data)
    (data / "collector.toml").write_text('[retention]\ninterval = "1h"\nmax_age = "1d"\n')
    config = load_config(data)
    store = Store(config.database_url)

    def turn() -> list[str]:  # one worker's first turn
        lines: list[str] = []
        retention_loop(config, lambda: store, _OnePass(), lines.append)
        return lines

    try:
        assert len(turn()) == 1 and not stale.exists() and fresh.exists()
        stale.write_bytes(b"\x7fELF left again")
        _backdate(stale, 2)
        assert turn() == [] and stale.exists()  # another worker, within the hour: no pass
        (data / "retention.lock").write_text(f"{time.time() + 1:.3f}\n")
        assert turn() == [] and stale.exists()  # a pass stamped a little ahead (clocks differ): still no pass
        (data / "retention.lock").write_text(f"{time.time() - 3601:.3f}\n")
        assert len(turn()) == 1 and not stale.exists() and fresh.exists()  # the hour is over
        stale.write_bytes(b"\x7fELF left again")
        _backdate(stale, 2)
        (data / "retention.lock").write_text(f"{time.time() + 3601:.3f}\n")
        assert len(turn()) == 1 and not stale.exists()  # stamped an hour ahead: the clock was set back
    finally:
        store.close()
