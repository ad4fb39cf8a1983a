"""Root-escape file reads: a container's root is the tenant's to shape. The
pipe handler runs as root on the host and keeps the crashed program's own
libraries, opened by the paths in /proc/PID/maps under /proc/PID/root; an
absolute symlink planted on such a path must resolve inside the container's
root (openat2 RESOLVE_IN_ROOT), never on the host, where the same path may
name a root-only file.

The crashed program runs in a mount namespace of its own, pivoted into its
root as a container runtime does. It maps /data/sub/libx.so, then mounts a tmpfs over /data and
plants there ``sub -> <H>/decoy``, an absolute symlink: inside the
container it leads to a hard link of the very library that was mapped;
on the host, ``<H>/decoy/libx.so`` is a root-only file with a secret. Then
it crashes inside libx, under the handler ``host-setup install`` put in
place. Nothing races: the planted symlink is there before the crash."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import crashkit
from collector.spool import read_meta
from handlerkit import bundle_of

SECRET = b"HOST-ONLY-SECRET-f3a9c1"

LIBX = r"""
int crash_here(void) { return *(volatile int *)0; }
"""

DECOY = r"""
const char secret[] = "HOST-ONLY-SECRET-f3a9c1";
int crash_here(void) { return secret[0]; }
"""

# Into a container of its own, the way runc does it: a new mount namespace,
# the root directory bind-mounted and pivoted into, the host's root detached.
ENTER = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (unshare(CLONE_NEWNS) != 0) { perror("unshare"); return 10; }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) { perror("private"); return 11; }
    if (mount(argv[1], argv[1], NULL, MS_BIND | MS_REC, NULL) != 0) { perror("bind"); return 12; }
    if (chdir(argv[1]) != 0 || syscall(SYS_pivot_root, ".", ".") != 0) { perror("pivot_root"); return 13; }
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) { perror("detach"); return 14; }
    execv(argv[2], argv + 2);
    perror("execv");
    return 15;
}
"""

PROG = r"""
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>
int crash_here(void);
int main(int argc, char **argv)
{
    /* what a container's root user may do to its own root: cover /data and plant a symlink */
    if (mount("tmpfs", "/data", "tmpfs", 0, "mode=0755") != 0) { perror("mount"); return 2; }
    if (symlink(argv[1], "/data/sub") != 0) { perror("symlink"); return 3; }
    return crash_here();
}
"""


def cc(out: Path, source: str, *args: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-g", "-O0", "-Wl,--build-id", "-o", str(out), str(src), *args], check=True,
                   capture_output=True)
    src.unlink()
    return out


def copy_into_root(root: Path, prog: Path, lib_dir: Path) -> None:
    """The loader and libc the program needs, at their paths inside ``root``."""
    ldd = subprocess.run(["ldd", str(prog)], capture_output=True, text=True, check=True,
                         env={"LD_LIBRARY_PATH": str(lib_dir)}).stdout
    for path in re.findall(r"(/\S+) \(0x", ldd):
        if path.startswith(str(lib_dir)):
            continue
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(path), dest)
        dest.chmod(0o755)


@pytest.fixture
def container():
    """(host dir H, the container root R inside it, the mapped library, the decoy)."""
    crashkit.need("gcc", "ldd")
    host = Path(tempfile.mkdtemp(prefix="ct-esc-", dir="/tmp"))
    try:
        root = host / "root"
        lib_dir = root / "data" / "sub"
        lib_dir.mkdir(parents=True)
        libx = cc(lib_dir / "libx.so", LIBX, "-shared", "-fPIC")
        prog = cc(root / "prog", PROG, f"-L{lib_dir}", "-lx", "-Wl,-rpath,/data/sub:/lib/x86_64-linux-gnu")
        copy_into_root(root, prog, lib_dir)
        inside = root / str(host / "decoy").lstrip("/")  # <H>/decoy as the container sees it
        inside.mkdir(parents=True)
        os.link(libx, inside / "libx.so")  # the library that is mapped, under the symlink's target
        (host / "decoy").mkdir()
        decoy = cc(host / "decoy" / "libx.so", DECOY, "-shared", "-fPIC")
        decoy.chmod(0o600)
        assert SECRET in decoy.read_bytes()
        cc(host / "enter", ENTER)
        yield host, root, libx, decoy
    finally:
        shutil.rmtree(host, ignore_errors=True)


def test_a_symlink_in_the_container_root_never_reads_a_host_file(collector_installed, container):
    data = collector_installed
    host, root, libx, decoy = container
    p = subprocess.Popen([str(host / "enter"), str(root), "/prog", str(host / "decoy")],
                         preexec_fn=crashkit.allow_cores, env={}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -11, (p.returncode, err)  # enter execs the program: the pid is the program's
    meta = read_meta(bundle_of(data / "spool", p.pid))
    assert "/data/sub/libx.so" in meta.maps and meta.core_file == "core.zst", meta
    kept = data / "spool" / meta.id / "root" / "data" / "sub" / "libx.so"
    # resolved in the container's root: the very library that crashed, not the host's file
    assert kept.read_bytes() == libx.read_bytes(), meta.problems
    for place in (data / "spool", data / "files"):
        for f in place.rglob("*"):
            assert not (f.is_file() and SECRET in f.read_bytes()), f"{f} holds the host's root-only file"
