"""coretriage as a debuginfod server (issue 11, part 4): the real web server,
the real elfutils client (debuginfod-find) and a real gdb, a Bearer token
from DEBUGINFOD_HEADERS_FILE; only files a stored crash or an upload holds."""

import hashlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

import symbolkit
import webserver
from coretriage.config import load_config
from coretriage.ingest import ingest, keep_file
from coretriage.store import Store


@pytest.fixture
def served(tmp_path):
    """A stored crash of a stripped program whose file was captured, its
    debug file uploaded, a user with a token, and the web server running."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    build = symbolkit.split_build(tmp_path / "b")
    core = symbolkit.crash(build, tmp_path / "cores")
    config = load_config(data)
    store = Store(config.database_url)
    try:
        kept = keep_file(config.files_dir, build.exe)
        done = ingest(config, store, core, meta={"files": {str(build.exe): kept.name}})
    finally:
        store.close()
    webserver.cli(data, "symbols", "add", str(build.debug))
    webserver.add_user(data, "alice", "viewer", "correct horse battery")
    token = webserver.cli(data, "token", "add", "alice").strip()
    headers = tmp_path / "headers"
    headers.write_text(f"Authorization: Bearer {token}\n")
    with webserver.web_server(data, tmp_path / "web.log") as url:
        yield url, token, headers, build, core, done


def _client_env(tmp_path, url, headers):
    env = dict(os.environ, DEBUGINFOD_URLS=f"{url}/debuginfod", DEBUGINFOD_HEADERS_FILE=str(headers),
               DEBUGINFOD_CACHE_PATH=str(tmp_path / "client-cache"), DEBUGINFOD_TIMEOUT="20")
    env.pop("DEBUGINFOD_VERBOSE", None)
    return env


def test_debuginfod_find_gets_the_captured_program_and_the_uploaded_debug_file(tmp_path, served):
    url, _, headers, build, _, _ = served
    env = _client_env(tmp_path, url, headers)
    for kind, original in (("executable", build.exe), ("debuginfo", build.debug)):
        done = subprocess.run(["debuginfod-find", kind, build.build_id], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        got = done.stdout.strip()
        assert hashlib.sha256(open(got, "rb").read()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_no_token_no_file_and_nothing_it_does_not_hold(tmp_path, served):
    url, token, _, build, _, _ = served

    def get(path, bearer=token):
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    assert get(f"/debuginfod/buildid/{build.build_id}/executable", None)[0] == 401
    assert get(f"/debuginfod/buildid/{build.build_id}/executable", "ct_not_a_token")[0] == 401
    status, body = get(f"/debuginfod/buildid/{build.build_id}/executable")
    assert status == 200 and body == build.exe.read_bytes()
    # a build-id nobody stored, a kind that is not one, a path instead of an id, sources
    assert get("/debuginfod/buildid/" + "ab" * 20 + "/executable")[0] == 404
    assert get(f"/debuginfod/buildid/{build.build_id}/shadow")[0] == 404
    assert get("/debuginfod/buildid/..%2f..%2fetc%2fshadow/executable")[0] == 404
    assert get(f"/debuginfod/buildid/{build.build_id}/source/etc/shadow")[0] == 404
    # the build-id of a host file no crash stored is not served, though it exists on this host
    libc = symbolkit.build_id_of(__import__("pathlib").Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))
    assert get(f"/debuginfod/buildid/{libc}/executable")[0] == 404


def test_an_engineers_gdb_gets_the_program_of_a_crash_whose_files_are_gone(tmp_path, served):
    """The program is gone from where it crashed (the container is gone):
    gdb, given only the core and coretriage as its debuginfod, names the frames."""
    url, _, headers, build, core, _ = served
    gone = tmp_path / "gone"
    shutil.move(str(build.exe.parent), gone)
    env = _client_env(tmp_path, url, headers)
    done = subprocess.run(["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled on", "-iex", "set confirm off",
                           "-ex", "bt", "-c", str(core)],
                          env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert "header_length" in out and "parse_request" in out, out[-3000:]
    fetched = {p.name for p in (tmp_path / "client-cache" / build.build_id).iterdir()}
    assert {"executable", "debuginfo"} <= fetched  # from coretriage, through the token


GREET = '#include <string.h>\nsize_t greet_len(const char *who) { return strlen(who) + 7; }\n' \
        'size_t greet(const char *who) { return greet_len(who); }\n'
MAIN = '#include <stdio.h>\nsize_t greet(const char *who);\n' \
       'int main(int argc, char **argv) { printf("%zu\\n", greet(argc > 5 ? argv[1] : NULL)); return 0; }\n'


def test_gdb_gets_a_crashed_programs_library_after_it_is_gone(tmp_path):
    """A library the crashed process mapped, captured with the crash: once
    it is gone from disk (the container is gone), an engineer's gdb asks
    coretriage for it by build-id and gets the very bytes that crashed.
    (gdb 13.1, Debian bookworm's, downloads it but does not load a
    downloaded library of a core; debuginfod-find and later gdbs use it.)"""
    import hashlib
    import signal as signals

    import crashkit

    src = tmp_path / "src"
    src.mkdir()
    (src / "greet.c").write_text(GREET)
    (src / "main.c").write_text(MAIN)
    lib_dir = tmp_path / "container-lib"
    lib_dir.mkdir()
    lib = lib_dir / "libgreet.so"
    subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", str(lib), str(src / "greet.c")], check=True)
    app = tmp_path / "app"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(app), str(src / "main.c"), f"-L{lib_dir}", "-lgreet",
                    f"-Wl,-rpath,{lib_dir}"], check=True)
    core = crashkit.crash([str(app)], tmp_path / "cores", expect_signal=signals.SIGSEGV)
    lib_id, lib_sha = symbolkit.build_id_of(lib), hashlib.sha256(lib.read_bytes()).hexdigest()

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = load_config(data)
    store = Store(config.database_url)
    try:
        files = {str(p): keep_file(config.files_dir, p).name for p in (app, lib)}
        done = ingest(config, store, core, meta={"files": files})
        assert done.signature.text.startswith("strlen | greet_len | greet | main"), done.signature.text
    finally:
        store.close()
    webserver.add_user(data, "bob", "viewer", "correct horse battery")
    headers = tmp_path / "headers"
    headers.write_text(f"Authorization: Bearer {webserver.cli(data, 'token', 'add', 'bob').strip()}\n")
    shutil.rmtree(lib_dir)
    with webserver.web_server(data, tmp_path / "web.log") as url:
        env = _client_env(tmp_path, url, headers)
        done = subprocess.run(["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled on", "-ex", "bt",
                               str(app), "-c", str(core)], env=env, capture_output=True, text=True, timeout=120)
        assert f"Downloading executable for {lib}" in done.stdout + done.stderr, done.stdout[-2000:]
        fetched = tmp_path / "client-cache" / lib_id / "executable"
        assert hashlib.sha256(fetched.read_bytes()).hexdigest() == lib_sha
        found = subprocess.run(["debuginfod-find", "debuginfo", lib_id], env=dict(
            env, DEBUGINFOD_CACHE_PATH=str(tmp_path / "cache2")), capture_output=True, text=True, timeout=60)
        assert found.returncode == 0 and \
            hashlib.sha256(open(found.stdout.strip(), "rb").read()).hexdigest() == lib_sha  # unstripped: both
