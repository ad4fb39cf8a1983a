"""Symbols (issue 11, parts 1-3): the local store, `symbols add` of debug
files, trees and real dbgsym packages, a real debuginfod server, servers
that hang or answer garbage, and the re-analysis when symbols arrive.
Real programs built here, split and stripped, crashed by the kernel."""

import json
import os
import subprocess
import sys
import time

import pytest

import symbolkit
from coretriage.config import load_config
from coretriage.ingest import ingest
from coretriage.store import Store

CLI = [sys.executable, "-m", "coretriage.cli"]
NAMED = "strlen | header_length | parse_request | main"


def coretriage(data, *argv, ok=True):
    done = subprocess.run([*CLI, "--data-dir", str(data), *argv], capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    return d


def _store(data):
    config = load_config(data)
    return config, Store(config.database_url)


def _ingest(data, core):
    config, store = _store(data)
    try:
        done = ingest(config, store, core)
        return done.crash.id, done.crash.group_id, done.signature.text
    finally:
        store.close()


def _group(data, gid):
    config, store = _store(data)
    try:
        return store.group(gid)
    finally:
        store.close()


def test_symbols_add_a_debug_file_renames_the_group_and_keeps_its_id(tmp_path, data):
    build = symbolkit.split_build(tmp_path / "b")
    crash_id, gid, sig = _ingest(data, symbolkit.crash(build, tmp_path / "cores"))
    assert sig.startswith("strlen | segv+0x"), sig  # stripped: no names yet

    started = time.monotonic()
    out = coretriage(data, "symbols", "add", str(build.debug)).stdout
    took = time.monotonic() - started
    assert "re-analyzed 1 crashes, 1 groups renamed" in out, out
    assert took < 30
    g = _group(data, gid)
    assert g.signature == NAMED and g.renamed_from == sig and g.renamed_at
    # gdb's own layout: a debug-file-directory as it is
    stored = data / "symbols/.build-id" / build.build_id[:2] / f"{build.build_id[2:]}.debug"
    assert stored.is_file()
    listed = json.loads(coretriage(data, "symbols", "list", "--json").stdout)
    assert [(e["build_id"], e["kind"], e["origin"]) for e in listed] == [(build.build_id, "debuginfo", "upload")]
    shown = json.loads(coretriage(data, "show", crash_id, "--json").stdout)
    exe = next(m for m in shown["analysis"]["modules"] if m["build_id"] == build.build_id)
    assert exe["symbols"] == "debug"
    page = coretriage(data, "export", f"g{gid}", "--format", "text").stdout
    assert "symbols arrived on" in page and f"renamed from {sig}" in page

    coretriage(data, "symbols", "remove", build.build_id)
    assert not stored.exists()
    assert json.loads(coretriage(data, "symbols", "list", "--json").stdout) == []


def test_a_dbgsym_package_merges_two_groups_into_the_older(tmp_path, data):
    """Two builds of one program: two groups by offsets while stripped, one
    group once both have symbols, with the older id, state and note."""
    a = symbolkit.split_build(tmp_path / "a")
    b = symbolkit.split_build(tmp_path / "b", flags=("-fomit-frame-pointer", "-DBUILD_B"))
    assert a.build_id != b.build_id
    _, ga, sa = _ingest(data, symbolkit.crash(a, tmp_path / "cores"))
    _, gb, sb = _ingest(data, symbolkit.crash(b, tmp_path / "cores"))
    assert ga < gb and sa != sb
    config, store = _store(data)
    store.set_state(ga, "acknowledged", "on it")
    store.close()

    deb_a = symbolkit.dbgsym_deb(tmp_path, a, "segv-a-dbgsym")
    deb_b = symbolkit.dbgsym_deb(tmp_path, b, "segv-b-dbgsym")
    deb_b = deb_b.rename(deb_b.with_suffix(".deb"))  # a .ddeb and a .deb: both are dbgsym packages
    out = coretriage(data, "symbols", "add", str(deb_a), str(deb_b)).stdout
    assert "re-analyzed 2 crashes" in out and "1 merged" in out, out
    g = _group(data, ga)
    assert (g.signature, g.count, g.state, g.note) == (NAMED, 2, "acknowledged", "on it")
    assert g.renamed_from == sa
    groups = json.loads(coretriage(data, "list", "--json").stdout)
    assert [x["group_id"] for x in groups] == [f"g{ga}"]


def test_bad_symbol_input_is_one_line_and_stores_nothing(tmp_path, data):
    build = symbolkit.split_build(tmp_path / "b")
    other = symbolkit.split_build(tmp_path / "o", flags=("-O1",))
    assert other.build_id != build.build_id
    _ingest(data, symbolkit.crash(build, tmp_path / "cores"))
    corrupt = tmp_path / "broken_1.0_amd64.deb"
    good = symbolkit.dbgsym_deb(tmp_path, build)
    corrupt.write_bytes(good.read_bytes()[:300] + b"\0garbage" * 100)
    for argv, words in (([str(corrupt)], "not a readable package"),
                        ([str(other.debug)], "matches no stored crash"),
                        ([str(build.debug), str(corrupt)], "not a readable package"),  # nothing half-stored
                        ([str(tmp_path / "nothing-here")], "no such file"),
                        ([str(tmp_path / "b" / "segv.c.txt")], "no such file")):
        done = coretriage(data, "symbols", "add", *argv, ok=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("coretriage: error:") and words in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert json.loads(coretriage(data, "symbols", "list", "--json").stdout) == []
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF file")
    done = coretriage(data, "symbols", "add", str(text), ok=False)
    assert done.returncode == 1 and "not an ELF file" in done.stderr
    # --any keeps a file for crashes to come
    coretriage(data, "symbols", "add", "--any", str(other.debug))
    assert [e["build_id"] for e in json.loads(coretriage(data, "symbols", "list", "--json").stdout)] == \
        [other.build_id]


def test_a_build_id_tree_is_taken_as_gdb_lays_it_out(tmp_path, data):
    build = symbolkit.split_build(tmp_path / "b")
    _, gid, _ = _ingest(data, symbolkit.crash(build, tmp_path / "cores"))
    tree = tmp_path / "debugroot"
    target = tree / ".build-id" / build.build_id[:2] / f"{build.build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    target.write_bytes(build.debug.read_bytes())
    (tree / "escape").symlink_to("/etc/shadow")  # never followed
    coretriage(data, "symbols", "add", str(tree))
    assert _group(data, gid).signature == NAMED


def test_debuginfod_urls_setting_names_a_crash_at_its_first_analysis(tmp_path, data, monkeypatch):
    """A real elfutils debuginfod serving the split debug file: the setting,
    not the environment, and the fetched file lands in the store."""
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    build = symbolkit.split_build(tmp_path / "b")
    core = symbolkit.crash(build, tmp_path / "cores")
    with symbolkit.serving_debug_file(build, tmp_path) as url:
        (data / "coretriage.toml").write_text(f'debuginfod_urls = "{url}"\n')
        _, _, sig = _ingest(data, core)
    assert sig == NAMED
    assert (data / "symbols/.build-id" / build.build_id[:2] / f"{build.build_id[2:]}.debug").is_file()
    # the next analysis needs no network at all: the server is gone
    second = symbolkit.crash(build, tmp_path / "cores", variant=3)
    assert _ingest(data, second)[2] == NAMED


def test_the_environment_still_works_when_the_setting_is_unset(tmp_path, data, monkeypatch):
    build = symbolkit.split_build(tmp_path / "b")
    with symbolkit.serving_debug_file(build, tmp_path) as url:
        monkeypatch.setenv("DEBUGINFOD_URLS", url)
        assert _ingest(data, symbolkit.crash(build, tmp_path / "cores"))[2] == NAMED


@pytest.mark.parametrize("kind", ["hang", "garbage", "junk200"])
def test_a_bad_debuginfod_server_costs_its_time_limit_and_one_line(tmp_path, data, kind):
    build = symbolkit.split_build(tmp_path / "b")
    core = symbolkit.crash(build, tmp_path / "cores")
    with symbolkit.bad_server(kind) as url:
        (data / "coretriage.toml").write_text(f'debuginfod_urls = "{url}"\ndebuginfod_timeout = 2\n')
        started = time.monotonic()
        config, store = _store(data)
        try:
            done = ingest(config, store, core)
        finally:
            store.close()
        took = time.monotonic() - started
    assert took < 20
    assert done.signature.text.startswith("strlen | segv+0x")  # analyzed all the same
    notes = [p for p in done.analysis.problems if p.code == "symbols_unavailable"]
    assert len(notes) == 1 and url in notes[0].message, done.analysis.problems
    assert not (data / "symbols/.build-id").exists() or not any((data / "symbols/.build-id").rglob("*.debug"))


def test_a_known_miss_is_not_asked_again_within_its_ttl(tmp_path, data):
    build = symbolkit.split_build(tmp_path / "b")
    empty = tmp_path / "served"
    empty.mkdir()
    with symbolkit.debuginfod_server(empty, tmp_path) as (url, _):
        (data / "coretriage.toml").write_text(f'debuginfod_urls = "{url}"\n')
        _ingest(data, symbolkit.crash(build, tmp_path / "cores"))
        miss = data / "symbols/misses" / build.build_id
        assert miss.is_file()
        # within the TTL the server is not asked: put the file there now, it is not fetched
        (empty / "segv.debug").write_bytes(build.debug.read_bytes())
        symbolkit.wait_served(url, build.build_id)
        first_group = _ingest(data, symbolkit.crash(build, tmp_path / "cores", 2))
        assert first_group[2].startswith("strlen | segv+0x")
        # past it (an old miss), it is, and the earlier crashes of the build are named too
        os.utime(miss, (time.time() - 2 * 86400,) * 2)
        crash_id, gid, sig = _ingest(data, symbolkit.crash(build, tmp_path / "cores", 4))
    assert sig == NAMED and gid > first_group[1]
    config, store = _store(data)
    try:  # the new crash's group met the older one: the older id stays
        assert {store.crash(c).group_id for c, _ in store.crash_ids()} == {first_group[1]}
        assert store.group(first_group[1]).count == 3 and store.group(first_group[1]).signature == NAMED
    finally:
        store.close()


def test_a_captured_unstripped_build_names_the_stripped_crashes_of_that_build(tmp_path, data):
    """A crash whose sysroot holds the unstripped program (same build-id)
    brings the symbols: the earlier crash of the stripped copy is renamed."""
    build = symbolkit.split_build(tmp_path / "b")
    _, gid, sig = _ingest(data, symbolkit.crash(build, tmp_path / "cores"))
    assert sig.startswith("strlen | segv+0x")
    # the same build, unstripped: put its debug info back into a sysroot copy of the program
    root = tmp_path / "root"
    inside = root / str(build.exe).lstrip("/")
    inside.parent.mkdir(parents=True)
    subprocess.run(["eu-unstrip", "-o", str(inside), str(build.exe), str(build.debug)], check=True)
    assert symbolkit.build_id_of(inside) == build.build_id
    config, store = _store(data)
    try:
        done = ingest(config, store, symbolkit.crash(build, tmp_path / "cores", 5), sysroot=root)
        assert done.signature.text == NAMED
        assert store.group(gid).signature == NAMED and store.group(gid).count == 2
        assert store.group(gid).renamed_from == sig
    finally:
        store.close()


def test_fetched_files_are_a_cache_with_a_size_limit_and_uploads_stay(tmp_path):
    """Real debug files (libc6-dbg's): over the limit the oldest fetched go
    first; an upload is never evicted; a symlink or a non-ELF is refused."""
    from coretriage.symbols import SymbolError, SymbolStore

    files = sorted((p for p in __import__("pathlib").Path("/usr/lib/debug/.build-id").rglob("*.debug")
                    if p.is_file() and not p.is_symlink() and 20_000 < p.stat().st_size < 4 << 20),
                   key=lambda p: p.name)[:3]
    assert len(files) == 3, "libc6-dbg is not installed"
    store = SymbolStore(tmp_path / "symbols", max_bytes=10 << 20)
    upload = store.add_path(files[0], "upload")[0]
    first = store.add_path(files[1], "debuginfod")[0]
    meta = first.path.with_name(first.path.name + ".meta")
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "added": 1.0}))  # fetched long ago
    store.max_bytes = upload.size + files[2].stat().st_size + 1  # room for the upload and one fetched file
    second = store.add_path(files[2], "debuginfod")[0]
    left = {e.build_id for e in store.entries()}
    assert left == {upload.build_id, second.build_id}  # the oldest fetched went
    assert store.lookup(upload.build_id) == upload.path
    link = tmp_path / "link.debug"
    link.symlink_to(files[0])
    text = tmp_path / "x.debug"
    text.write_text("no")
    for bad in (link, text):
        with pytest.raises(SymbolError):
            store.add_path(bad, "upload")


def test_the_pages_show_the_os_and_the_rename(tmp_path, data):
    """The crash page shows the crashed root's OS; the group page says when
    symbols arrived and what the group was called before."""
    from webclient import viewer_test_client
    from webui import create_app

    build = symbolkit.split_build(tmp_path / "b")
    config, store = _store(data)
    try:
        done = ingest(config, store, symbolkit.crash(build, tmp_path / "cores"),
                      meta={"os_release": {"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}})
    finally:
        store.close()
    old = done.signature.text
    coretriage(data, "symbols", "add", str(build.debug))
    app = create_app({"DATA_DIR": str(data), "TESTING": True})
    c = viewer_test_client(app)
    crash_page = c.get(f"/crashes/{done.crash.id}").text
    assert "Debian GNU/Linux 12 (bookworm)" in crash_page
    group_page = c.get(f"/groups/{done.crash.group_id}").text
    assert "symbols arrived on" in group_page and "renamed from" in group_page
    assert old.split(" | ")[1] in group_page


def test_auto_asks_the_server_of_the_crashed_roots_distribution(tmp_path, data, monkeypatch):
    """debuginfod_urls = "auto": the crash's os-release (from its bundle)
    picks the server; here the table's Debian entry points at a real local
    debuginfod, and a crash from an OS the table does not know asks nobody."""
    import coretriage.debuginfod as debuginfod

    build = symbolkit.split_build(tmp_path / "b")
    with symbolkit.serving_debug_file(build, tmp_path) as url:
        monkeypatch.setitem(debuginfod.PUBLIC_SERVERS, "debian", url)
        (data / "coretriage.toml").write_text('debuginfod_urls = "auto"\n')
        config, store = _store(data)
        try:
            unknown = ingest(config, store, symbolkit.crash(build, tmp_path / "cores"),
                             meta={"os_release": {"ID": "plan9"}})
            assert unknown.signature.text.startswith("strlen | segv+0x")
            assert not (data / "symbols/misses" / build.build_id).exists()  # nobody was asked
            debian = ingest(config, store, symbolkit.crash(build, tmp_path / "cores", 6),
                            meta={"os_release": {"ID": "debian", "VERSION_ID": "12"}})
            assert debian.signature.text == NAMED
            # and the first crash of that build, fetched for by the second, is named too
            assert store.group(store.crash(unknown.crash.id).group_id).signature == NAMED
        finally:
            store.close()
