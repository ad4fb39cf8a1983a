"""The data dir is private: 0700 directories and 0600 files, whatever the umask.

It holds every analysis, environment and SQL statement, the cores, and the
password and token hashes, so no other local user may read any of it. Every
entry point opens it through ``open_private`` before it creates anything:

- a missing data dir is made 0700 (its missing parents get the usual modes:
  they are not ours alone);
- an existing one must belong to the user running coretriage: a data dir of
  another user is refused with one line, never written to (root included: a
  root process writing into a directory someone else controls is how links
  get followed into /etc);
- an existing one of ours with group or other bits (one made by an older
  coretriage under umask 022) is tightened once, with everything under it:
  group and other bits are cleared, nothing else changes.

``private_dirs`` and ``private_file`` make what goes inside with the same
modes; the CLI also sets the umask to ``PRIVATE_UMASK`` so that whatever
else it creates (gdb's scratch, Celery's files) is private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from analyzer.errors import CoretriageError

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_LOOSE = 0o077  # group and other bits
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class DataDirError(CoretriageError):
    """A data dir coretriage may not use: another user's, or not a directory."""


def open_private(data_dir: Path) -> Path:
    """Make sure ``data_dir`` exists, is ours and is 0700 (see the module docstring)."""
    data_dir = Path(data_dir)
    if not os.path.lexists(data_dir):
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(data_dir, DIR_MODE)
        except FileExistsError:
            pass  # made by another process just now: checked below like any other
        except OSError as exc:
            raise DataDirError(f"cannot create the data dir {data_dir}: {exc.strerror}") from None
    try:
        fd = os.open(data_dir, _DIR)
    except OSError as exc:
        raise DataDirError(f"data dir {data_dir}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise DataDirError(f"data dir {data_dir} belongs to uid {st.st_uid}, not to uid {os.geteuid()} "
                               "that runs coretriage: refused (run coretriage as its owner, or chown it)")
        if st.st_mode & _LOOSE:
            os.fchmod(fd, DIR_MODE)
            n = _tighten_below(fd)
            import logging  # only here: a cold `coretriage list` does not pay for it

            logging.getLogger("coretriage").warning("data dir %s was mode %o: made 0700, and %d entries under it private", data_dir,
                        stat.S_IMODE(st.st_mode), n)
    finally:
        os.close(fd)
    return data_dir


def _tighten_below(top_fd: int) -> int:
    """Clear group and other bits of our own files and directories under
    ``top_fd`` (symlinks are neither followed nor changed); how many changed."""
    changed = 0
    for _dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or not st.st_mode & _LOOSE:
                    continue
                os.chmod(name, stat.S_IMODE(st.st_mode) & ~_LOOSE, dir_fd=dir_fd)
                changed += 1
            except OSError:
                continue  # gone meanwhile
    return changed


def private_dirs(path: Path) -> Path:
    """``mkdir -p`` whose every new directory is 0700 (``Path.mkdir`` gives
    the missing parents the umask's mode)."""
    path = Path(path)
    missing = []
    for p in [path, *path.parents]:
        if p.is_dir():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(p, DIR_MODE)  # a umask such as 0o277 takes bits away
    return path


def private_file(path: Path, create: bool = True) -> None:
    """Create ``path`` empty and 0600 unless it exists; an existing file of
    ours loses its group and other bits. For files another library creates
    by name (SQLite's database, whose -wal, -shm and -journal copy its mode)."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & _LOOSE:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~_LOOSE)
    finally:
        os.close(fd)
