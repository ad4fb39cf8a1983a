"""collector/dumpdir.py: what a dump-directory entry must be before it is read."""

import os
import stat

import pytest

from collector.dumpdir import DumpRefused, Identity, open_dump, refusal, unlink_if_same


@pytest.fixture
def dump(tmp_path):
    d = tmp_path / "dumps"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    yield d, fd
    os.close(fd)


def test_a_regular_single_link_file_is_opened_and_read_through_its_fd(dump):
    d, dir_fd = dump
    (d / "core.1").write_bytes(b"\x7fELF core")
    fd, st = open_dump(dir_fd, "core.1")
    try:
        assert os.read(fd, 64) == b"\x7fELF core" and stat.S_ISREG(st.st_mode)
    finally:
        os.close(fd)
    (d / "core.1").rename(d / "elsewhere")
    (d / "core.1").write_bytes(b"other")
    assert not unlink_if_same(dir_fd, "core.1", Identity.of(st))  # the name now names another file
    assert (d / "core.1").exists()
    assert unlink_if_same(dir_fd, "elsewhere", Identity.of(st)) and not (d / "elsewhere").exists()


@pytest.mark.parametrize("make, why", [
    (lambda p: os.symlink("/etc/passwd", p), "a symlink, not a regular file"),
    (lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
    (lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 5)), "a character device, not a regular file"),
    (lambda p: os.mkdir(p), "a directory, not a regular file"),
])
def test_anything_but_a_regular_file_is_refused_without_being_opened(dump, make, why):
    d, dir_fd = dump
    make(d / "core.2")
    with pytest.raises(DumpRefused, match=why):
        open_dump(dir_fd, "core.2")


def test_a_hard_link_and_a_set_uid_file_are_refused(dump, tmp_path):
    d, dir_fd = dump
    other = tmp_path / "other"
    other.write_bytes(b"not a core")
    os.link(other, d / "core.3")
    with pytest.raises(DumpRefused, match="2 hard links"):
        open_dump(dir_fd, "core.3")
    (d / "core.4").write_bytes(b"x")
    (d / "core.4").chmod(0o4755)
    assert refusal(os.stat(d / "core.4")) == "a set-uid or set-gid file"
    with pytest.raises(DumpRefused, match="not a plain file name"):
        open_dump(dir_fd, "../other")
