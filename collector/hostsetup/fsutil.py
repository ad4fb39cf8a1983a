"""Small file-system helpers for the adapters: atomic writes, exact snapshots."""

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
