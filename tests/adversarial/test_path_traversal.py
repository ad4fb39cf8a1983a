"""Path traversal: a crashing program chooses its executable's name and its
comm (``../../x``, newlines, bytes that are not UTF-8, option-like names,
shell syntax). The real kernel hands them to the pipe handler that
``host-setup install`` put in place; they are recorded (escaped) in
meta.json and never become part of a path: nothing is written outside the
spool and the shared files directory, and the stored files are named by
build-id, the hostile name only a leaf inside."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import crashkit
from collector.bundle import display, is_bundle_id
from collector.spool import read_meta
from handlerkit import bundle_of, crash, elf_core_header
from syslogcap import syslog  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def segv(tmp_path_factory):
    crashkit.need("gcc")
    return crashkit.compile_c("segv.c", tmp_path_factory.mktemp("bin") / "segv")


def written_by_the_handler(data: Path, before: set[str]) -> list[str]:
    return sorted(set(os.listdir(data)) - before)


@pytest.mark.parametrize("name", [b"evil\nname", b"..x", b"...", b"bad\xffname", b"-s", b"a b ; touch pwned"])
def test_hostile_executable_names(collector_installed, segv, tmp_path, name, syslog):
    data = collector_installed
    spool = data / "spool"
    in_data = set(os.listdir(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = os.path.join(os.fsencode(bin_dir), name)
    shutil.copy(segv, exe)
    before = set(os.listdir("/tmp")), set(os.listdir("/"))
    pid, seconds = crash([exe], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert seconds < 10
    bundle = bundle_of(spool, pid)
    meta = read_meta(bundle)
    assert meta.exe == display(exe) and meta.pid == pid and meta.signal == 11
    assert meta.comm == display(name[:15])
    assert meta.core_file == "core.zst" and elf_core_header(bundle / "core.zst")[:4] == b"\x7fELF"
    # nothing but bundles in the spool, nothing written anywhere else
    assert bundle.parent == spool
    for entry in os.listdir(spool):
        assert is_bundle_id(entry) or entry == ".ratelimit.json", entry
    assert sorted(os.listdir(bundle)) == ["core.zst", "files.json", "meta.json", "root", "stack.zst"]
    assert written_by_the_handler(data, in_data) == ["files", "spool"]
    # stored files are named by their content's sha256; the hostile name is only in root/
    assert os.listdir(data / "files") == ["sha256"]
    assert all(len(d) == 64 and set(d) <= set("0123456789abcdef") for d in os.listdir(data / "files" / "sha256"))
    assert sorted(os.listdir(bin_dir)) == [os.fsdecode(name)]
    assert not (tmp_path / "pwned").exists() and not Path("/pwned").exists()
    after = set(os.listdir("/tmp")), set(os.listdir("/"))
    assert not [n for n in after[0] - before[0] if "evil" in n or "bad" in n or n.startswith("..")]
    assert after[1] == before[1]
    line = syslog.wait_for(f"pid {pid} ")
    assert "\n" not in line.rstrip("\n")


RENAME_AND_CRASH = r"""
#include <string.h>
#include <sys/prctl.h>
int main(int argc, char **argv)
{
    prctl(PR_SET_NAME, argv[1], 0, 0, 0);   /* comm: any 15 bytes the program likes */
    return *(volatile int *)0;
}
"""


def test_hostile_comm(collector_installed, tmp_path):
    data = collector_installed
    in_data = set(os.listdir(data))
    src = tmp_path / "rename.c"
    src.write_text(RENAME_AND_CRASH)
    exe = tmp_path / "rename"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True, capture_output=True)
    comm = b"../../x\n\xff/.."
    escapes = (Path("/x"), data.parent / "x")  # where "../../x" would land
    before = [_identity(p) for p in escapes]  # another program's /tmp/x is not the handler's doing
    pid, _ = crash([os.fsencode(exe), comm])
    bundle = bundle_of(data / "spool", pid)
    meta = read_meta(bundle)
    # the kernel writes '/' in %e as '!'; the rest arrives as it is
    assert meta.comm == display(comm.replace(b"/", b"!")) and meta.exe == str(exe)
    assert written_by_the_handler(data, in_data) == ["files", "spool"]
    assert sorted(os.listdir(bundle)) == ["core.zst", "files.json", "meta.json", "root", "stack.zst"]
    assert [_identity(p) for p in escapes] == before


def _identity(path: Path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns
