"""Symlink and hardlink attacks on a dump directory and on the spool.

A user who can write to a dump directory plants (or swaps in, while the
root collector checks the file for writers: tests/system/dumpswap.py) a
symlink or a hard link to a root-only file; the collector must never copy
such a file into a bundle. On the pipe handler's side (the real kernel and
the handler ``host-setup install`` put in place), a symlink planted where
the spool or the shared files directory will be is refused, and the crashed
process is still released."""

import os
from pathlib import Path

import pytest

import crashkit
from collector.spool import finished_bundles, read_meta
from collector.watch import Collector
from dumpswap import plant_core, take_with_swap
from handlerkit import bundle_of, crash
from syslogcap import syslog  # noqa: F401  (a fixture)

SECRET = b"root:$6$not-for-you$only-root-reads-this:19000:0:99999:7:::\n"


@pytest.fixture
def dump(tmp_path):
    d = tmp_path / "dumps"
    d.mkdir()
    os.chmod(d, 0o1777)  # like /var/crash: every user's crashes land here
    return d


@pytest.fixture
def secret(tmp_path):
    """A root-only file on the dump directory's file system (a hard link needs one)."""
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    path = vault / "shadow"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def spool_holds(spool: Path, data: bytes) -> bool:
    return spool.exists() and any(data in p.read_bytes() for p in spool.rglob("*") if p.is_file())


def test_a_planted_hard_link_to_a_root_only_file_is_not_imported(dump, secret, tmp_path):
    link = dump / "core.4242"
    os.link(secret, link)  # what a user can do where fs.protected_hardlinks is 0
    out = take_with_swap(dump, tmp_path / "spool", "none")
    assert not out.hung and out.returncode == 0 and out.taken == 0
    assert out.bundles == [] and not spool_holds(tmp_path / "spool", SECRET)
    assert any("2 hard links" in line and "refused" in line for line in out.log), out.log
    assert secret.read_bytes() == SECRET and link.exists()  # neither name removed


@pytest.mark.parametrize("how, target", [("symlink", "/etc/shadow"), ("symlink", "secret"),
                                         ("hardlink", "secret")])
def test_a_link_swapped_in_while_the_collector_checks_is_not_imported(dump, secret, tmp_path, how, target):
    target = str(secret) if target == "secret" else target
    plant_core(dump)
    out = take_with_swap(dump, tmp_path / "spool", how, target)
    assert not out.hung and out.returncode == 0 and out.taken == 0
    assert out.bundles == [] and not spool_holds(tmp_path / "spool", SECRET)
    refused = [line for line in out.log if "refused" in line]
    assert len(refused) == 1 and "core.1234" in refused[0], out.log
    assert secret.read_bytes() == SECRET


def test_a_dump_directory_another_user_can_swap_is_refused(tmp_path, secret):
    """The dump directory lives in a directory a user owns (a home, a volume):
    they replace it with a symlink to a root-only directory. The collector
    would read, and then remove, that directory's files."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    dump = home / "cores"
    os.symlink(secret.parent, dump)  # what the user does to their own directory
    os.lchown(dump, 65534, 65534)
    (secret.parent / "core.1").write_bytes(SECRET)
    out = take_with_swap(dump, tmp_path / "spool", "none")
    assert not out.hung and out.returncode == 0 and out.taken == 0 and out.bundles == []
    refused = [line for line in out.log if "refused" in line]
    assert len(refused) == 1 and f"{home} is owned by uid 65534" in refused[0], out.log
    assert (secret.parent / "core.1").read_bytes() == SECRET and secret.read_bytes() == SECRET


def test_a_symlinked_bundle_in_the_spool_is_not_offered(tmp_path, secret):
    """The collector's reading side: a bundle-named symlink to a directory
    that looks finished is skipped."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "meta.json").write_text("{}")
    os.symlink(elsewhere, spool / "1700000000-1-deadbeef")
    offered = []
    c = Collector(spool, offered.append)
    c.scan()
    c.drain(timeout=0.01)
    assert offered == [] and list(finished_bundles(spool, include_done=True)) == []


# ---- the pipe handler on the real kernel ----

@pytest.fixture(scope="module")
def segv(tmp_path_factory):
    crashkit.need("gcc")
    return crashkit.compile_c("segv.c", tmp_path_factory.mktemp("bin") / "segv")


def test_a_symlink_planted_as_the_spool_is_refused(collector_installed, segv, tmp_path, syslog):
    data = collector_installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (data / "spool").symlink_to(elsewhere)
    pid, seconds = crash([str(segv)])
    line = syslog.wait_for(f"pid {pid} ", "lost")
    assert seconds < 10  # the process was released although nothing was kept
    assert "symlink" in line and "\n" not in line.rstrip("\n")
    assert os.listdir(elsewhere) == []
    assert (data / "spool").is_symlink()


def test_a_symlink_planted_as_the_files_directory_is_refused(collector_installed, segv, tmp_path):
    data = collector_installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (data / "files").symlink_to(elsewhere)
    pid, _ = crash([str(segv)])
    meta = read_meta(bundle_of(data / "spool", pid))
    assert meta.core_file == "core.zst"  # the crash itself is kept
    assert any("files" in p and "symlink" in p for p in meta.problems), meta.problems
    assert os.listdir(elsewhere) == []
