"""World-readable data: a local user reading the database (every analysis,
environment and SQL statement, the password and token hashes) or the cores.

Under umask 022 (the usual one), everything the CLI, the web server, the
collector and the kernel's pipe handler create under the data dir must be
0700 or 0600, and ``nobody`` must not read the database. An older data dir
with looser modes is tightened; one that belongs to another user is refused."""

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import crashkit
from webserver import COMMAND, add_user, cli, web_server

NOBODY = 65534


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)  # every process the test starts inherits it
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_parent():
    """A directory every user may enter: only the data dir's own modes keep them out."""
    d = Path(tempfile.mkdtemp(prefix="ct-perm-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def loose(data: Path) -> list[str]:
    """Everything under ``data`` (itself included) that group or others may use."""
    out = []
    for p in [data, *data.rglob("*")]:
        st = p.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            out.append(f"{p.relative_to(data.parent)} {stat.S_IMODE(st.st_mode):o}")
    return out


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv],
                          capture_output=True, text=True, timeout=30)


def collector_run(data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([COMMAND, "--data-dir", str(data), "collector", "run", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def wait_for_crashes(data: Path, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db = data / "coretriage.db"
        if db.exists():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                try:
                    if conn.execute("SELECT count(*) FROM crashes").fetchone()[0] >= n:
                        return
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} crashes stored in {data}")


def test_cli_web_and_collector_make_a_private_data_dir(open_parent, samples, tmp_path):
    data = open_parent / "data"  # made by coretriage itself
    segv = samples("segv")
    cli(data, "ingest", str(segv.core), "--exe", str(segv.exe))
    add_user(data, "alice", "admin", "correct horse battery")
    cli(data, "token", "add", "alice")
    with web_server(data, tmp_path / "web.log") as url:
        assert urllib.request.urlopen(f"{url}/login", timeout=10).status == 200
    dump = tmp_path / "dumps"
    dump.mkdir()
    shutil.copy(samples("double_free").core, dump / "core.4321")
    collector = collector_run(data, "--dump-dir", str(dump))
    try:
        wait_for_crashes(data, 2)
    finally:
        err = stop(collector)
    assert not list(dump.iterdir()), err
    for made in ("coretriage.db", "secret_key", "spool", "cores", "files"):
        assert (data / made).exists(), made
    assert loose(data) == []
    read = as_nobody("cat", str(data / "coretriage.db"))
    assert read.returncode != 0 and "Permission denied" in read.stderr and "SQLite" not in read.stdout
    assert as_nobody("ls", str(data)).returncode != 0


def test_the_handler_and_collector_keep_an_installed_data_dir_private(collector_installed, samples, tmp_path):
    data = collector_installed
    exe = tmp_path / "app" / "segv"
    exe.parent.mkdir()
    shutil.copy(samples("segv").exe, exe)
    collector = collector_run(data)
    try:
        done = subprocess.run([str(exe)], preexec_fn=crashkit.allow_cores, capture_output=True)
        assert done.returncode == -11
        wait_for_crashes(data, 1)
    finally:
        err = stop(collector)
    assert list((data / "files").iterdir()), err  # the handler kept the program's files
    assert loose(data) == []


def test_an_older_looser_data_dir_is_tightened(open_parent):
    data = open_parent / "data"
    (data / "cores" / "ab").mkdir(parents=True)  # 0755 under umask 022, as an older coretriage left it
    (data / "cores" / "ab" / "c.core.zst").write_bytes(b"core")
    with sqlite3.connect(data / "coretriage.db") as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE leftover (x)")
    (data / "coretriage.db").chmod(0o644)
    assert loose(data)
    cli(data, "list")
    assert loose(data) == []
    assert as_nobody("cat", str(data / "coretriage.db")).returncode != 0


def test_a_data_dir_of_another_user_is_refused(open_parent):
    data = open_parent / "data"
    data.mkdir()
    os.chown(data, NOBODY, NOBODY)
    done = subprocess.run([COMMAND, "--data-dir", str(data), "list"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and f"belongs to uid {NOBODY}" in done.stderr
    assert list(data.iterdir()) == []  # nothing written into it
