"""Whether only root (or the user running us) can change what a path names.

A root process that reads or writes through a path another user can change
(a directory they own or may write to, a symlink of theirs) can be pointed
at any file on the host. ``untrusted_path`` walks a path from / the way the
kernel does, symlinks included, and says which component is not safe.
Used by host-setup install (the data dir, the handler, its Python), the
data dir's opening and the collector's dump directories.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


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
