"""A core file in a dump directory, opened once and only if it is one.

A dump directory (a file core_pattern, or a volume containers write cores
to) may be writable by the users whose programs crash there, and the
collector that reads it runs as root. Between the listing and the read,
such a user can swap the name for a symlink to a root-only file, a hard
link to one, a FIFO or a device. So the name is resolved exactly once,
relative to the directory's fd and with ``O_PATH | O_NOFOLLOW`` (which opens
nothing: a FIFO does not block and a device driver never sees an open),
the result is checked with ``fstat``, and only a regular file with a
single link is then opened for reading, through that same fd. Everything
after uses the fd; the name is used again only to remove the file, and
only while it still names the inode that was read. The file's owner is not
judged (the kernel writes each core as the crashed process's user, so any
uid is expected) but recorded with the crash. The directory itself is
scanned only while the way to it is root's (``collector.watch``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from analyzer.errors import CoretriageError

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class DumpRefused(CoretriageError):
    """A dump-directory entry that is not a core file the collector may take."""


@dataclass(frozen=True)
class Identity:
    """Which inode a name pointed at, and how big it was."""

    dev: int
    ino: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Identity":
        return cls(st.st_dev, st.st_ino, st.st_size)

    def same_file(self, other: "Identity") -> bool:
        return (self.dev, self.ino) == (other.dev, other.ino)


def refusal(st: os.stat_result) -> str | None:
    """Why an entry with this (l)stat must not be read as a core, or None."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"{kind}, not a regular file"
    if st.st_nlink != 1:
        # the kernel writes a core as a new file; a second name means it may be any file on the host
        return f"a regular file with {st.st_nlink} hard links"
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return "a set-uid or set-gid file"
    return None


def open_dump(dir_fd: int, name: str) -> tuple[int, os.stat_result]:
    """(fd open for reading, its fstat) of ``name`` in ``dir_fd``; raises
    DumpRefused, one line, when it is not a regular single-link file."""
    if "/" in name or name in ("", ".", ".."):
        raise DumpRefused(f"{name!r}: not a plain file name")
    try:
        path_fd = os.open(name, _PATH, dir_fd=dir_fd)
    except OSError as exc:
        raise DumpRefused(f"{name!r}: {exc.strerror}") from None
    try:
        st = os.fstat(path_fd)
        why = refusal(st)
        if why:
            raise DumpRefused(f"{name!r} is {why}: refused")
        # reopening the O_PATH fd reads the inode just checked, whatever the name points at now
        fd = os.open(f"/proc/self/fd/{path_fd}", _READ)
    except OSError as exc:
        raise DumpRefused(f"{name!r}: {exc.strerror}") from None
    finally:
        os.close(path_fd)
    read_st = os.fstat(fd)
    if (read_st.st_dev, read_st.st_ino) != (st.st_dev, st.st_ino):  # a /proc that is not procfs
        os.close(fd)
        raise DumpRefused(f"{name!r}: reopened as another file: refused")
    return fd, read_st


def unlink_if_same(dir_fd: int, name: str, taken: Identity) -> bool:
    """Remove ``name`` if it still names the inode that was taken."""
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not taken.same_file(Identity.of(now)):
        return False
    os.unlink(name, dir_fd=dir_fd)
    return True
