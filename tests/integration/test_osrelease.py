"""The crashed root's os-release (collector.osrelease), read inside the
process's own root: a process chrooted into a tree with another
distribution's os-release gives that one, never the host's; a FIFO or a
link out of the root planted there is not followed out nor blocks."""

import os
import subprocess
import time

import pytest

from collector.osrelease import read_in_root

PAUSE = "#include <unistd.h>\nint main(void) { pause(); return 0; }\n"


@pytest.fixture
def rooted(tmp_path):
    """Start a static program chrooted into a fresh tree; yield (root, start)."""
    src = tmp_path / "pause.c"
    src.write_text(PAUSE)
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["musl-gcc", "-static", "-o", str(root / "pause"), str(src)], check=True)
    procs = []

    def start():
        p = subprocess.Popen(["/pause"], preexec_fn=lambda: os.chroot(root), cwd="/")
        procs.append(p)
        time.sleep(0.2)
        return os.open(f"/proc/{p.pid}", os.O_PATH | os.O_DIRECTORY)

    yield root, start
    for p in procs:
        p.kill()
        p.wait()


def test_the_containers_os_release_not_the_hosts(rooted):
    root, start = rooted
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n')
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    fd = start()
    try:
        assert read_in_root(fd) == {"ID": "alpine", "VERSION_ID": "3.19.1", "PRETTY_NAME": "Alpine Linux v3.19"}
    finally:
        os.close(fd)


def test_an_absolute_link_stays_inside_and_a_fifo_is_not_opened(rooted):
    root, start = rooted
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("/etc/hostname")  # resolved in the root: there is none
    (root / "usr/lib").mkdir(parents=True)
    os.mkfifo(root / "usr/lib/os-release")
    fd = start()
    try:
        started = time.monotonic()
        assert read_in_root(fd) is None
        assert time.monotonic() - started < 2
    finally:
        os.close(fd)
