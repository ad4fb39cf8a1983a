"""What coretriage serves as a debuginfod server (``webui/debuginfod.py``).

A build-id's file is served only when coretriage holds it: in the symbol
store (``symbols add``, a fetch, a captured unstripped build), or captured
from a crashed process (``DATA/files/sha256/<hex>``, named by the crash's
``files.json`` path -> sha256 and the module build-ids of its analysis).
The request gives a build-id (hex, checked) and a kind from a fixed list;
no path from the request is ever used. Each candidate file is checked
before it is served: a regular ELF file whose own build-id is the one asked
for (a crash's analysis is data; a build-id is only what a file claims, so
the served file is the one a stored crash mapped, by its bytes). Files of
crashes whose analysis is for admins only (set-uid, non-dumpable) are
served to admins only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from coretriage.symbols import BUILD_ID, DEBUGINFO, EXECUTABLE, elf_kind, store_of

KINDS = (EXECUTABLE, DEBUGINFO)


def _checked(path: Path, build_id: str, kind: str) -> int | None:
    """An open descriptor of ``path`` when it is a regular ELF file of
    ``build_id`` of the kind asked for; the caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            found = elf_kind(fd)
            if found is not None and found.build_id == build_id and (found.debug if kind == DEBUGINFO
                                                                     else found.code):
                os.lseek(fd, 0, os.SEEK_SET)
                return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _captured(config, store, build_id: str, admin: bool):
    """Paths of files stored crashes captured that claim ``build_id``."""
    from coretriage.access import is_restricted

    sha_dir = config.files_dir / "sha256"
    for crash_id, _ in store.crashes_mentioning(json.dumps(build_id))[:50]:
        row = store.crash(crash_id)
        if is_restricted(row.meta) and not admin:
            continue
        files = row.meta.get("files") if isinstance(row.meta.get("files"), dict) else {}
        for m in row.analysis.get("modules") or ():
            if not isinstance(m, dict) or m.get("build_id") != build_id:
                continue
            digest = files.get(m.get("path"))
            if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                yield sha_dir / digest
            if m.get("path") == row.analysis.get("executable") and row.exe_file:
                exe = Path(row.exe_file)
                if str(exe).startswith(str(config.files_dir) + "/"):
                    yield exe


def open_file(config, store, build_id: str, kind: str, admin: bool = False) -> int | None:
    """An open descriptor of the file to serve, or None (404)."""
    build_id = (build_id or "").lower()
    if kind not in KINDS or not BUILD_ID.fullmatch(build_id):
        return None
    held = store_of(config).lookup(build_id, kind)
    candidates = ([held] if held else []) + list(_captured(config, store, build_id, admin))
    for path in candidates:
        fd = _checked(path, build_id, kind)
        if fd is not None:
            return fd
    return None
