"""Small file-system helpers for the adapters: atomic writes, exact snapshots,
and whether only root can change a path."""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Snapshot:
    """A file as it was: its bytes and mode, or absent."""

    exists: bool
    content: bytes | None = None
    mode: int | None = None  # permission bits
    uid: int | None = None
    gid: int | None = None


def snapshot(path: Path) -> Snapshot:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Snapshot(exists=False)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(f"{path} exists and is not a regular file")
    return Snapshot(True, path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o644,
                 uid: int | None = None, gid: int | None = None) -> None:
    """Write a sibling temporary file, fsync it and rename it over ``path``."""
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def restore(path: Path, snap: Snapshot) -> str:
    """Put ``path`` back as ``snap`` recorded it; returns what was done."""
    if not snap.exists:
        try:
            path.unlink()
        except FileNotFoundError:
            return "already absent"
        return "removed"
    atomic_write(path, snap.content or b"", mode=snap.mode if snap.mode is not None else 0o644,
                 uid=snap.uid, gid=snap.gid)
    return "restored"


def missing_dirs(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, outermost first."""
    out = []
    for parent in path.parents:
        if parent.exists():
            break
        out.append(parent)
    return list(reversed(out))


def untrusted_entry(path: Path, st: os.stat_result, owners: tuple[int, ...] = (0,)) -> str | None:
    """Why another user than root could change ``path`` (lstat ``st``), or None.
    It must be owned by root (or one of ``owners``) and not writable by group
    or others; a sticky directory such as /tmp is fine (others cannot replace
    its entries), a symlink's own mode means nothing."""
    if st.st_uid not in owners:
        return f"{path} is owned by uid {st.st_uid}, not " + " or ".join(
            "root" if uid == 0 else f"uid {uid}" for uid in owners)
    if stat.S_ISLNK(st.st_mode):
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def untrusted_path(path: Path | str, max_links: int = 40, *, judge_leaf: bool = True,
                   owners: tuple[int, ...] = (0,)) -> str | None:
    """Why a user other than root could change what ``path`` names, or None.
    Every component from / is checked as it is walked (``untrusted_entry``),
    and a symlink on the way is checked itself, then its target walked the
    same way. Components that do not exist yet are not checked: root will
    create them, and an existing one made by someone else is refused here.
    With ``judge_leaf=False`` the directory or file finally reached may be
    anyone's (a dump directory every user writes to): only the way to it
    must be root's (or ``owners``')."""
    path = Path(os.path.abspath(path))
    cur = Path("/")
    why = untrusted_entry(cur, os.lstat(cur), owners)
    if why:
        return why
    todo = list(path.parts[1:])
    links = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            cur = cur.parent
            continue
        nxt = cur / name
        try:
            st = os.lstat(nxt)
        except (FileNotFoundError, NotADirectoryError):
            return None
        leaf = not todo and not stat.S_ISLNK(st.st_mode)
        why = None if leaf and not judge_leaf else untrusted_entry(nxt, st, owners)
        if why:
            return why
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                return f"{path}: too many symlinks"
            target = Path(os.readlink(nxt))
            if target.is_absolute():
                cur = Path("/")
                todo = list(target.parts[1:]) + todo
            else:
                todo = list(target.parts) + todo
            continue
        cur = nxt
    return None
