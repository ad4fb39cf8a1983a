"""collector/sysroot.py keeps a mapped file only if the file its path opens
now is the one the process mapped: same device and inode as the maps line.

Real mounts in a mount namespace of the test's own (``unshare -m``), real
crashes through the real pipe handler:

- a file covered, after it was mapped, by another build on another tmpfs
  mounted over its directory, with the same inode number (a fresh tmpfs
  numbers its files the same way): the inode alone matches, the device not;
- a file on an overlay mount (what a container's root is): kept. Kernels
  show an overlay file in maps either as the overlay's device and inode
  (6.x, as fstat does) or as the layer's real file (older ones); the handler
  compares against what the kernel shows for a mapping of the file it
  opened, so both are recognised.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import crashkit
from collector.spool import read_meta
from handlerkit import bundle_of

MAPPER = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0 || mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED) return 2;
    close(fd);
    puts("mapped"); fflush(stdout);
    pause();
    return 0;
}
"""

SWAP_ON_ANOTHER_TMPFS = """
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs "$DIR"
cp "$V1" "$DIR/lib.so"
"$MAPPER" "$DIR/lib.so" > "$OUT/mapped" & pid=$!
while [ ! -s "$OUT/mapped" ]; do sleep 0.05; done
mount -t tmpfs tmpfs "$DIR"
cp "$V2" "$DIR/lib.so"
echo $pid > "$OUT/pid"
kill -SEGV $pid
wait $pid || true
"""

ON_OVERLAY = """
set -e
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$DIR"
"$MAPPER" "$DIR/lib.so" > "$OUT/mapped" & pid=$!
while [ ! -s "$OUT/mapped" ]; do sleep 0.05; done
grep -m1 ' /.*lib.so$' /proc/$pid/maps > "$OUT/maps"
echo $pid > "$OUT/pid"
kill -SEGV $pid
wait $pid || true
"""


def _library(tmp_path: Path, name: str, function: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(f"int {function}(void) {{ return 1; }}\n")
    out = tmp_path / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True)
    return out


def _mapper(tmp_path: Path) -> Path:
    (tmp_path / "mapper.c").write_text(MAPPER)
    exe = tmp_path / "mapper"
    subprocess.run(["gcc", "-o", str(exe), str(tmp_path / "mapper.c")], check=True, capture_output=True)
    return exe


def _run(script: str, tmp_path: Path, **env) -> int:
    out = tmp_path / "out"
    out.mkdir()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OUT": str(out), **{k: str(v) for k, v in env.items()}}
    subprocess.run(["unshare", "-m", "--fork", "sh", "-c", script], check=True, timeout=60,
                   preexec_fn=crashkit.allow_cores, env=env)
    return int((out / "pid").read_text())


def test_same_inode_on_another_device_is_not_taken(collector_installed, tmp_path):
    directory = tmp_path / "mnt"
    directory.mkdir()
    v1, v2 = _library(tmp_path, "v1", "first_build"), _library(tmp_path, "v2", "second_build")
    pid = _run(SWAP_ON_ANOTHER_TMPFS, tmp_path, DIR=directory, V1=v1, V2=v2, MAPPER=_mapper(tmp_path))
    bundle = bundle_of(collector_installed / "spool", pid)
    meta = read_meta(bundle)
    path = f"{directory}/lib.so"
    assert path in meta.maps
    assert not (bundle / "root" / path.lstrip("/")).exists(), "a file from another device was kept"
    assert any(path in p and "changed on disk" in p for p in meta.problems), meta.problems


def test_file_on_an_overlay_mount_is_taken(collector_installed, tmp_path):
    lower, upper, work, directory = (tmp_path / n for n in ("lower", "upper", "work", "mnt"))
    for d in (lower, upper, work, directory):
        d.mkdir()
    v1 = _library(tmp_path, "v1", "first_build")
    (lower / "lib.so").write_bytes(v1.read_bytes())
    pid = _run(ON_OVERLAY, tmp_path, DIR=directory, LOWER=lower, UPPER=upper, WORK=work, MAPPER=_mapper(tmp_path))
    bundle = bundle_of(collector_installed / "spool", pid)
    meta = read_meta(bundle)
    path = f"{directory}/lib.so"
    assert (bundle / "root" / path.lstrip("/")).read_bytes() == v1.read_bytes(), meta.problems
    assert not any("changed on disk" in p for p in meta.problems), meta.problems

    # the identity the handler falls back on is the one the kernel shows for the crashed process
    from collector.sysroot import _mapped_identity

    maps_line = (tmp_path / "out" / "maps").read_text().split()
    major, minor = (int(x, 16) for x in maps_line[3].split(":"))
    fd = os.open(bundle / "root" / path.lstrip("/"), os.O_RDONLY)
    try:
        assert _mapped_identity(fd) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    finally:
        os.close(fd)
    assert (os.makedev(major, minor), int(maps_line[4])) != (0, 0)
