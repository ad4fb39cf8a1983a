"""The data dir is private: 0700 directories and 0600 files, whatever the umask.

It holds every analysis, environment and SQL statement, the cores, and the
password and token hashes, so no other local user may read any of it. Every
entry point opens it through ``open_private`` before it creates anything:

- the way to it must be root's or ours: a data dir reached through a
  directory or symlink another user could swap is refused with one line (a
  root process writing through a path someone else controls is how links
  get followed into /etc);
- a missing data dir is made 0700 (its missing parents get the usual modes:
  they are not ours alone);
- an existing one must belong to the user running coretriage: a data dir of
  another user is refused with one line, never written to, root included;
- an existing one of ours with group or other bits (one made by an older
  coretriage under umask 022) is tightened once: the directory and, with
  everything under them, the entries coretriage makes there lose their group
  and other bits, nothing else changes. A loose directory holding none of
  coretriage's files (``--data-dir /etc`` by mistake) is refused, not changed.

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
# what coretriage makes in a data dir: only these are tightened
OURS = frozenset({"coretriage.db", "coretriage.db-wal", "coretriage.db-shm", "coretriage.db-journal",
                  "coretriage.toml", "collector.toml", "secret_key", "admin-password", "host-setup.json",
                  "coretriage.sock", "spool", "cores", "files", "tmp", "rules", "bin"})


class DataDirError(CoretriageError):
    """A data dir coretriage may not use: another user's, one whose path another
    user could change, a loose directory that is not a data dir, or not a directory."""


def open_data_dir(config) -> Path:
    """``open_private`` for a Config: its SQLite database, whatever its name, is coretriage's too."""
    return open_private(config.data_dir, also=sqlite_names(config.database_url, config.data_dir))


def sqlite_names(url: str, data_dir: Path) -> frozenset[str]:
    """The names a SQLite database at ``url`` has in ``data_dir`` (with -wal, -shm, -journal)."""
    if not url.startswith("sqlite:///"):
        return frozenset()
    path = Path(url[len("sqlite:///"):].split("?", 1)[0])
    if path.parent != Path(data_dir):
        return frozenset()
    return frozenset(path.name + suffix for suffix in ("", "-wal", "-shm", "-journal"))


def open_private(data_dir: Path, also: frozenset[str] = frozenset()) -> Path:
    """Make sure ``data_dir`` exists, is ours and is 0700 (see the module
    docstring); ``also`` names entries that are coretriage's besides ``OURS``."""
    from collector.pathtrust import untrusted_path

    data_dir = Path(os.path.abspath(data_dir))
    why = untrusted_path(data_dir, judge_leaf=False, owners=tuple(dict.fromkeys((0, os.geteuid()))))
    if why:
        raise DataDirError(f"data dir {data_dir}: {why}, so another user could point it elsewhere: refused "
                           "(choose a data dir whose path only root, or you, can change)")
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
            names, ours = set(os.listdir(fd)), OURS | also
            if names and not names & ours:
                raise DataDirError(f"data dir {data_dir} is mode {stat.S_IMODE(st.st_mode):o} and holds none of "
                                   "coretriage's files: refused, not made private (choose an empty directory "
                                   "or a coretriage data dir)")
            os.fchmod(fd, DIR_MODE)
            n = _tighten(fd, names & ours)
            import logging  # only here: a cold `coretriage list` does not pay for it

            logging.getLogger("coretriage").warning("data dir %s was mode %o: made 0700, and %d entries in it "
                                                    "private", data_dir, stat.S_IMODE(st.st_mode), n)
    finally:
        os.close(fd)
    return data_dir


def _tighten_one(dir_fd: int, name: str) -> tuple[bool, bool]:
    """(changed, is a directory) for one entry: our own files and directories
    lose their group and other bits; symlinks are neither followed nor changed."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return False, False
        is_dir = stat.S_ISDIR(st.st_mode)
        if not st.st_mode & _LOOSE:
            return False, is_dir
        os.chmod(name, stat.S_IMODE(st.st_mode) & ~_LOOSE, dir_fd=dir_fd)
        return True, is_dir
    except OSError:
        return False, False  # gone meanwhile


def _tighten(top_fd: int, names: set[str]) -> int:
    """Tighten ``names`` in ``top_fd`` and everything under those that are
    directories (never through a symlink); how many entries changed."""
    changed = 0
    for name in sorted(names):
        done, is_dir = _tighten_one(top_fd, name)
        changed += done
        if not is_dir:
            continue
        for _path, dirnames, filenames, dir_fd in os.fwalk(name, dir_fd=top_fd, follow_symlinks=False):
            for entry in dirnames + filenames:
                changed += _tighten_one(dir_fd, entry)[0]
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
