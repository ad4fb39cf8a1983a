"""collector/handler.py: the pipe handler, started by the kernel for real crashes.

core_pattern is pointed at ``python -I -m collector.handler -d <tmp>`` for
each test (through ``collector.corepattern.swapped``, which holds a lock and
always puts the old value back), a real program is crashed, and the bundle
the kernel's handler wrote is checked. Needs root; fails, never skips.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crashkit
from collector.bundle import is_bundle_id
from collector.cgroup import container_from_cgroup
from collector.corepattern import core_pattern, pattern_lock, read_pattern, swapped
from collector.spool import read_meta
from handlerkit import bundle_of, core_bytes, core_pipe_limit, crash
from syslogcap import syslog  # noqa: F401  (a fixture)


PYTHON = sys.executable
SECRETS = ("passwd123", "hunter2", "tok-xyz-42")


# ---- fixtures ----

@pytest.fixture(scope="module")
def segv(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.fail("the pipe handler tests need root (core_pattern); run them as root")
    crashkit.need("gcc")
    if not os.path.isabs(PYTHON) or any(c.isspace() for c in PYTHON):
        pytest.fail(f"{PYTHON!r}: the kernel needs an absolute interpreter path without spaces")
    # The kernel starts the handler with cwd / and an almost empty environment.
    probe = subprocess.run([PYTHON, "-I", "-c", "import collector.handler, zstandard"], cwd="/",
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"collector is not importable the way the kernel runs it (pip install -e .): {probe.stderr}")
    return crashkit.compile_c("segv.c", tmp_path_factory.mktemp("bin") / "segv")


@pytest.fixture
def handler(data_dir, segv):
    """core_pattern -> the collector handler writing under ``data_dir``; restored afterwards."""
    pattern = core_pattern(PYTHON, data_dir=str(data_dir))
    with pattern_lock():  # the same lock as crashkit: parallel test runs wait for each other
        before = read_pattern()
        try:
            with swapped(pattern, lock=False) as old:
                assert old == before and read_pattern() == pattern
                yield data_dir / "spool"
        finally:
            assert read_pattern() == before, "core_pattern was not restored"


# ---- helpers ----

def write_config(data_dir: Path, text: str) -> None:
    (data_dir / "collector.toml").write_text(text)


# ---- tests ----

def test_crash_captured_with_proc_details_and_secrets_masked(handler, segv, tmp_path, syslog):
    env = {"PATH": "/usr/bin:/bin", "DB_PASSWORD": "passwd123", "DATABASE_URL": "postgres://app:hunter2@db/x",
           "API_TOKEN": "tok-xyz-42", "LANG": "C"}
    before = time.time()
    pid, seconds = crash([str(segv), "GET /?a=1 HTTP/1.1"], env=env, cwd=tmp_path)
    after = time.time()
    assert seconds < 10, f"the crashed process took {seconds:.1f} s to be reaped"
    bundle = bundle_of(handler, pid)
    meta = read_meta(bundle)

    assert is_bundle_id(bundle.name) and bundle.name == meta.id and meta.pid == pid
    assert meta.signal == 11 and meta.tid == pid and meta.host_tid == pid
    assert meta.uid == 0 and meta.gid == 0 and meta.dump_mode == 1
    # %t is whole seconds; the handler starts after the crash, and before the core is read to its end
    assert int(before) <= meta.crash_time <= meta.host_time <= after, (before, meta.crash_time, meta.host_time, after)
    assert meta.exe == str(segv) and meta.comm == "segv" and meta.hostname == os.uname().nodename
    assert meta.cmdline == (str(segv), "GET /?a=1 HTTP/1.1") and meta.cwd == str(tmp_path)
    assert str(segv) in meta.maps and any("libc.so" in m for m in meta.maps)
    assert set(meta.namespaces) >= {"pid", "mnt"} and meta.namespaces["pid"].startswith("pid:[")
    assert meta.namespaces["pid"] == os.readlink("/proc/self/ns/pid")
    mine = container_from_cgroup(Path("/proc/self/cgroup").read_text())
    assert meta.container_id == (mine.id if mine else None)
    assert meta.cgroup == Path("/proc/self/cgroup").read_text().strip()
    assert not any("discarded" in p for p in meta.problems), meta.problems

    # secrets: masked in meta (and in the core, of course, they are in memory)
    assert meta.environ["DB_PASSWORD"] == "***" and meta.environ["API_TOKEN"] == "***"
    assert meta.environ["DATABASE_URL"] == "postgres://app:***@db/x" and meta.environ["LANG"] == "C"
    meta_text = (bundle / "meta.json").read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in meta_text

    # the core: a real ELF core, complete
    assert meta.dropped is None and meta.core_file == "core.zst"
    assert sorted(os.listdir(bundle)) == ["core.zst", "files.json", "meta.json", "root", "stack.zst"]
    core = core_bytes(bundle / "core.zst")
    assert core[:4] == b"\x7fELF" and int.from_bytes(core[16:18], "little") == 4  # ET_CORE
    assert len(core) == meta.core_size and meta.core_compressed_size == (bundle / "core.zst").stat().st_size
    assert b"passwd123" in core  # the environment is in memory: that is why cores are root-only

    # root-only
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    for name in ("core.zst", "meta.json"):
        st = (bundle / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(handler.stat().st_mode) == 0o700

    line = syslog.wait_for(f"pid {pid} ", "kept")
    assert meta.id in line and "\n" not in line.rstrip("\n")


def test_mapped_files_kept_once_per_content(handler, segv, tmp_path):
    """The executable and libraries that crashed go with the bundle, read
    through the process's own root; a second crash of the same build stores
    nothing new. files.json lists each by path and sha256."""
    import hashlib
    import json

    bundles = [bundle_of(handler, crash([str(segv), "x" * n], env={"PATH": "/usr/bin"})[0]) for n in (1, 2)]
    for bundle in bundles:
        assert not read_meta(bundle).problems, read_meta(bundle).problems
        exe_copy = bundle / "root" / str(segv).lstrip("/")
        assert exe_copy.read_bytes() == segv.read_bytes()
        libc = next(p for p in read_meta(bundle).maps if "libc.so" in p)
        assert (bundle / "root" / libc.lstrip("/")).read_bytes() == Path(libc).read_bytes()
        listed = json.loads((bundle / "files.json").read_text())["files"]
        assert {f["path"] for f in listed} == {str(segv), libc, *(m for m in read_meta(bundle).maps if "ld-linux" in m)}
        for f in listed:
            assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
    first = bundles[0] / "root" / str(segv).lstrip("/")
    second = bundles[1] / "root" / str(segv).lstrip("/")
    assert first.stat().st_ino == second.stat().st_ino  # one stored copy, linked twice
    files = handler.parent / "files"
    assert os.listdir(files) == ["sha256"]
    stored = files / "sha256" / hashlib.sha256(segv.read_bytes()).hexdigest()
    assert first.stat().st_ino == stored.stat().st_ino and first.stat().st_nlink == 3
    assert len(os.listdir(files / "sha256")) == len(json.loads((bundles[0] / "files.json").read_text())["files"])


def test_no_core_policy_keeps_the_stack_core(handler, segv):
    write_config(handler.parent, f'no_core = ["{segv.parent}/*"]\n')
    pid, _ = crash([str(segv), "y"], env={"PATH": "/usr/bin"})
    meta = read_meta(bundle_of(handler, pid))
    assert meta.core_file is None and meta.dropped.startswith("no_core policy") and meta.core_kind == "stack"
    assert not (handler / meta.id / "core.zst").exists() and meta.signal == 11
    stack = core_bytes(handler / meta.id / "stack.zst")
    assert stack[:4] == b"\x7fELF" and len(stack) == meta.stack_core_size < 1 << 20


def test_no_core_policy_none_keeps_metadata_only(handler, segv):
    write_config(handler.parent, f'no_core = ["{segv.parent}/*"]\nno_core_kind = "none"\n')
    pid, _ = crash([str(segv), "y"], env={"PATH": "/usr/bin"})
    meta = read_meta(bundle_of(handler, pid))
    assert meta.core_file is None and meta.dropped.startswith("no_core policy") and meta.core_kind == "none"
    assert os.listdir(handler / meta.id) == ["meta.json"] and meta.core_size == 0


def test_rate_limit_drops_cores_but_records_crashes(handler, segv, syslog):
    write_config(handler.parent, "rate_limit = 2\nrate_window = 600\nstack_rate_limit = 1\n")
    pids = [crash([str(segv)])[0] for _ in range(4)]
    metas = [read_meta(bundle_of(handler, pid)) for pid in pids]
    limited = "rate limit: 2 cores of this build per 600 s"
    assert [m.dropped for m in metas[:3]] == [None, None, limited]
    assert metas[3].dropped == f"{limited}; stack cores: 1 cores of this build per 600 s (stack_rate_limit)"
    assert [m.core_file for m in metas] == ["core.zst", "core.zst", None, None]
    assert [m.core_kind for m in metas] == ["full", "full", "stack", "none"]
    assert (handler / metas[2].id / "stack.zst").exists()
    for m in metas[3:]:  # never read: the pipe was closed at once
        assert m.core_size == 0 and m.stopped_reading == "core dropped before reading" and m.exe == str(segv)
        assert os.listdir(handler / m.id) == ["meta.json"]
    syslog.wait_for(f"pid {pids[3]} ", "dropped: rate limit")
    # the same build under another name has no budget of its own ...
    copy = handler.parent / "copy"
    shutil.copy(segv, copy)
    assert read_meta(bundle_of(handler, crash([str(copy)])[0])).dropped.startswith(limited)
    # ... another build has
    other = handler.parent / "other"
    shutil.copy(segv, other)
    subprocess.run(["objcopy", "--remove-section=.note.gnu.build-id", str(other)], check=True)
    meta = read_meta(bundle_of(handler, crash([str(other)])[0]))
    assert meta.dropped is None and meta.core_file == "core.zst"


def test_too_big_core_keeps_its_stack_core(handler, segv, syslog):
    write_config(handler.parent, "max_core_size = 65536\n")
    pid, seconds = crash([str(segv)])
    assert seconds < 10
    bundle = bundle_of(handler, pid)
    meta = read_meta(bundle)
    assert meta.stopped_reading == "max_core_size reached (65536 bytes)" and meta.core_kind == "stack"
    assert meta.dropped == "over max_core_size (65536 bytes): the stack core is kept"
    assert meta.core_file is None and not (bundle / "core.zst").exists() and (bundle / "root").is_dir()
    assert core_bytes(bundle / "stack.zst")[:4] == b"\x7fELF"
    syslog.wait_for(f"pid {pid} ", "with its stack core")


def test_too_big_core_cut_and_kept_partial(handler, segv, syslog):
    write_config(handler.parent, "max_core_size = 65536\nstack_cores = false\n")
    pid, seconds = crash([str(segv)])
    assert seconds < 10
    bundle = bundle_of(handler, pid)
    meta = read_meta(bundle)
    assert meta.stopped_reading == "max_core_size reached (65536 bytes)" and meta.dropped is None
    assert 65536 < meta.core_size <= 65536 + (1 << 20)  # read no further than that
    assert meta.core_file == "core.zst" and len(core_bytes(bundle / "core.zst")) == 65536
    assert core_bytes(bundle / "core.zst")[:4] == b"\x7fELF"
    syslog.wait_for(f"pid {pid} ", "partial: max_core_size reached")


def test_core_cut_before_its_notes_is_dropped(handler, segv, syslog):
    write_config(handler.parent, "max_core_size = 100\nstack_cores = false\n")
    pid, seconds = crash([str(segv)])
    assert seconds < 10
    bundle = bundle_of(handler, pid)
    meta = read_meta(bundle)
    assert meta.dropped == "max_core_size reached (100 bytes), before the core's notes were complete (100 bytes read)"
    assert meta.core_file is None and meta.core_compressed_size is None and meta.core_size > 100
    assert os.listdir(bundle) == ["meta.json"]
    assert meta.exe == str(segv) and meta.environ is not None
    syslog.wait_for(f"pid {pid} ", "dropped: max_core_size reached")


def test_process_held_until_released_with_core_pipe_limit(handler, segv):
    """With kernel.core_pipe_limit > 0 (as systemd-coredump sets it) the kernel
    holds the crashed process until the handler closes stdin: it must do so as
    soon as the core is read, and /proc is then reliably readable."""
    path = Path("/proc/sys/kernel/core_pipe_limit")
    old = path.read_text()
    path.write_text("16\n")
    try:
        pid, seconds = crash([str(segv)], env={"X_SECRET": "zz"})
    finally:
        path.write_text(old)
    assert path.read_text() == old
    assert seconds < 5, f"the crashed process was held {seconds:.1f} s"
    meta = read_meta(bundle_of(handler, pid))
    assert meta.core_file == "core.zst" and meta.environ == {"X_SECRET": "***"} and not meta.problems


def test_low_disk_space_drops_core(handler, segv):
    write_config(handler.parent, 'min_free_space = "1000T"\nstack_min_free_space = "1000T"\n')
    pid, _ = crash([str(segv)])
    meta = read_meta(bundle_of(handler, pid))
    assert meta.dropped.startswith("low disk space") and meta.core_file is None and meta.core_kind == "none"
    assert meta.core_size == 0 and meta.stopped_reading == "core dropped before reading"


def test_low_disk_space_keeps_the_stack_core_above_its_floor(handler, segv):
    write_config(handler.parent, 'min_free_space = "1000T"\nstack_min_free_space = "1M"\n')
    pid, _ = crash([str(segv)])
    meta = read_meta(bundle_of(handler, pid))
    assert meta.dropped.startswith("low disk space") and meta.dropped.endswith("(min_free_space 1099511627776000)")
    assert meta.core_kind == "stack" and meta.core_file is None
    assert sorted(os.listdir(handler / meta.id)) == ["files.json", "meta.json", "root", "stack.zst"]


def test_broken_config_still_captures(handler, segv):
    write_config(handler.parent, "max_core_size = [\n")
    pid, _ = crash([str(segv)])
    meta = read_meta(bundle_of(handler, pid))
    assert meta.core_file == "core.zst"
    assert any("collector.toml" in p and "default limits used" in p for p in meta.problems)


def test_bad_arguments_release_the_writer(data_dir):
    proc = subprocess.Popen([PYTHON, "-I", "-m", "collector.handler", "--nonsense"], cwd="/", env={},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with pytest.raises(BrokenPipeError):  # closed, not drained: a writer is let go, never held
        proc.stdin.write(os.urandom(4 << 20))  # far more than a pipe holds
        proc.stdin.flush()
    assert proc.wait(timeout=30) == 2
    assert proc.stdout.read() == b"" and proc.stderr.read() == b""  # no traceback
    assert not (data_dir / "spool").exists()


def test_full_spool_evicts_the_oldest_cores_first(handler, segv):
    write_config(handler.parent, 'max_spool_use = "1K"\n')  # every core is over it
    first = bundle_of(handler, crash([str(segv), "a"], env={"PATH": "/usr/bin"})[0])
    second = bundle_of(handler, crash([str(segv), "b"], env={"PATH": "/usr/bin"})[0])
    assert not (first / "core.zst").exists() and (first / "evicted").exists()
    assert (first / "meta.json").exists()  # the crash is still there ...
    assert (first / "stack.zst").exists() and (first / "root").is_dir()  # ... with its stack core and files
    assert (second / "core.zst").exists()  # the newest core is kept
    assert any("evicted" in p and first.name in p for p in read_meta(second).problems)


PLUGIN = r"""
#include <string.h>
int plugin_parse(const char *s) { return (int)strlen(s); }
int plugin_handle(const char *s) { return plugin_parse(s) + 1; }
"""

HOST = r"""
#include <dlfcn.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) return 2;
    char *heap = malloc(1 << 20);
    heap[0] = 1;
    int (*handle)(const char *) = (int (*)(const char *))dlsym(lib, "plugin_handle");
    return handle(NULL);
}
"""


def test_stack_core_names_the_frames_of_a_dlopened_library(handler, tmp_path):
    """The dynamic linker's list of a library opened with dlopen() is on the
    heap, which a stack core does not keep: the handler follows it in the
    crashed process's memory while the kernel dumps it, and keeps its nodes.
    That memory is there only while the kernel holds the process: with
    core_pipe_limit > 0, as host-setup sets it (with 0 a small core fits in
    the pipe and the process is gone before the handler looks)."""
    import zstandard

    from analyzer.analyze import analyze_core
    from analyzer.signature import generate

    (tmp_path / "plugin.c").write_text(PLUGIN)
    (tmp_path / "host.c").write_text(HOST)
    plugin, host = tmp_path / "libplugin.so", tmp_path / "host"
    subprocess.run(["gcc", "-g", "-O0", "-fno-omit-frame-pointer", "-shared", "-fPIC", "-o", str(plugin),
                    str(tmp_path / "plugin.c")], check=True, capture_output=True)
    subprocess.run(["gcc", "-g", "-O0", "-fno-omit-frame-pointer", "-o", str(host), str(tmp_path / "host.c"),
                    "-ldl"], check=True, capture_output=True)
    write_config(handler.parent, f'no_core = ["{host}"]\n')
    with core_pipe_limit():
        pid, _ = crash([str(host), str(plugin)])
    meta = read_meta(bundle_of(handler, pid))
    assert meta.core_kind == "stack" and meta.core_file is None
    core = tmp_path / "stack.core"
    with open(handler / meta.id / "stack.zst", "rb") as f, open(core, "wb") as out:
        zstandard.ZstdDecompressor().copy_stream(f, out)
    analysis = analyze_core(core, host)
    assert generate(analysis).text.startswith("strlen | plugin_parse | plugin_handle | main")


def test_no_core_and_too_big_crashes_are_grouped_by_their_real_names(handler, segv):
    """Through the pipeline: a no_core program's crash and a core over
    max_core_size are analyzed from their stack cores, into the group their
    backtrace names; show --json's fields say which core each has."""
    from coretriage.config import load_config
    from coretriage.pipeline import process_bundle
    from coretriage.reports import crash_json
    from coretriage.store import Store

    data = handler.parent
    write_config(data, f'no_core = ["{segv}"]\n')
    first = bundle_of(handler, crash([str(segv)])[0])
    write_config(data, "max_core_size = 65536\n")
    second = bundle_of(handler, crash([str(segv)])[0])
    config = load_config(data)
    store = Store(config.database_url)
    try:
        done = [process_bundle(config, store, b) for b in (first, second)]
        assert {d.signature.text for d in done} == {"strlen | header_length | parse_request | main"}
        assert done[0].crash.group_id == done[1].crash.group_id
        shown = [crash_json(store.crash(d.crash.id)) for d in done]
        assert [s["core_kind"] for s in shown] == ["stack", "stack"]
        assert all(0 < s["core_size"] < 1 << 20 for s in shown)
        assert shown[0]["meta"]["core_kind_reason"].endswith("no_core policy for this executable (collector.toml)")
        assert "over max_core_size (65536 bytes)" in shown[1]["meta"]["core_kind_reason"]
    finally:
        store.close()
