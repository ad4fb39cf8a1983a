"""Hostile symbol input: a dbgsym package whose files are symlinks out of
it (to a debug file elsewhere on the host, to /etc/shadow), and a stored
crash whose analysis (data from a sandbox a hostile core may own) claims
another build's id for its captured file. Nothing outside the package is
read into the store; the debuginfod endpoint serves a file only under the
build-id its own bytes carry."""

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import symbolkit
import webserver
from coretriage.config import load_config
from coretriage.ingest import ingest, keep_file
from coretriage.records import Analyzed, CrashRecord
from coretriage.store import Store

CLI = [sys.executable, "-m", "coretriage.cli"]


def test_a_package_of_symlinks_stores_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    build = symbolkit.split_build(tmp_path / "b")
    config = load_config(data)
    store = Store(config.database_url)
    try:
        ingest(config, store, symbolkit.crash(build, tmp_path / "cores"))
    finally:
        store.close()
    root = tmp_path / "pkg"
    links = root / "usr/lib/debug/.build-id" / build.build_id[:2]
    links.mkdir(parents=True)
    (links / f"{build.build_id[2:]}.debug").symlink_to(build.debug)  # the right file, but outside the package
    (links / "shadow.debug").symlink_to("/etc/shadow")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: evil-dbgsym\nVersion: 1\nArchitecture: amd64\n"
                                         "Maintainer: x <x@example.org>\nDescription: x\n")
    deb = tmp_path / "evil-dbgsym_1_amd64.ddeb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    done = subprocess.run([*CLI, "--data-dir", str(data), "symbols", "add", str(deb)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "holds no ELF file" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (data / "symbols/.build-id").exists() or not any((data / "symbols/.build-id").rglob("*"))
    assert not list((data / "tmp").glob("symbols-*"))  # the unpacked package is gone too


def test_a_forged_build_id_in_a_stored_analysis_serves_nothing(tmp_path):
    """A crash whose stored analysis says its captured program is libc's
    build: asking for libc's build-id gets nothing (the file's own
    build-id is another), asking for the program's real one gets it."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    build = symbolkit.split_build(tmp_path / "b")
    libc_id = symbolkit.build_id_of(Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))
    config = load_config(data)
    store = Store(config.database_url)
    try:
        kept = keep_file(config.files_dir, build.exe)
        analysis = {"core": "x", "executable": "/srv/app", "threads": [],
                    "modules": [{"path": "/srv/app", "start": 0, "end": 4096, "build_id": libc_id,
                                 "symbols": "missing", "found_at": None},
                                {"path": "/srv/other", "start": 8192, "end": 9000, "build_id": build.build_id,
                                 "symbols": "missing", "found_at": None}]}
        store.add_crash(CrashRecord(id="c0123456789ab", crashed_at=1.0, meta={"files": {
            "/srv/app": kept.name, "/srv/other": kept.name, "/srv/../../etc/shadow": "../../../etc/shadow"}},
            analyzed=Analyzed(signature="x", signature_data={"text": "x"}, analysis=analysis,
                              executable="/srv/app", signal="SIGSEGV", quality=0.0)))
    finally:
        store.close()
    webserver.add_user(data, "eve", "viewer", "correct horse battery")
    token = webserver.cli(data, "token", "add", "eve").strip()
    with webserver.web_server(data, tmp_path / "web.log") as url:
        def get(build_id):
            request = urllib.request.Request(f"{url}/debuginfod/buildid/{build_id}/executable",
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, b""
        assert get(libc_id)[0] == 404
        assert get(build.build_id) == (200, build.exe.read_bytes())
