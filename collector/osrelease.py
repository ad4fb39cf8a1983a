"""The crashed root's ``/etc/os-release``: which distribution a container runs.

Read inside the process's own root (``/proc/PID/root``, through openat2
with RESOLVE_IN_ROOT, as ``collector.sysroot`` reads its libraries), so it is
the container's file, never the host's. The text is hostile: only the few
fields coretriage uses are kept, each a short line of printable characters.
"""

from __future__ import annotations

import os
import re
import stat

MAX_BYTES = 16 << 10
FIELDS = ("ID", "ID_LIKE", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME")
_LINE = re.compile(r"^([A-Z_]+)=(.*)$")


def parse(text: str) -> dict[str, str]:
    """The kept fields of an os-release text (shell-style quoting undone)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[:200]:
        found = _LINE.match(line.strip())
        if not found or found.group(1) not in FIELDS:
            continue
        value = found.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        value = re.sub(r"\\(.)", r"\1", value)
        value = "".join(c for c in value if c.isprintable())[:120]
        if value:
            out[found.group(1)] = value
    return out


def describe(fields: dict | None) -> str | None:
    """One line for people: PRETTY_NAME, else ID and VERSION_ID."""
    if not isinstance(fields, dict) or not fields:
        return None
    pretty = fields.get("PRETTY_NAME")
    if isinstance(pretty, str) and pretty:
        return pretty
    return " ".join(str(fields[k]) for k in ("ID", "VERSION_ID") if isinstance(fields.get(k), str)) or None


def read_in_root(proc_fd: int) -> dict[str, str] | None:
    """The os-release of the process whose ``/proc/PID`` is ``proc_fd``:
    ``/etc/os-release``, else ``/usr/lib/os-release``; None when neither
    is a readable regular file. Looked at with O_PATH first: a FIFO or a
    device planted there is never opened."""
    try:
        root = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
    except OSError:
        return None
    try:
        for path in (b"etc/os-release", b"usr/lib/os-release"):
            data = _read_regular(root, path)
            if data is not None:
                return parse(data.decode("utf-8", "replace")) or None
    finally:
        os.close(root)
    return None


def _read_regular(root: int, path: bytes) -> bytes | None:
    from collector.sysroot import openat2_in_root

    try:
        # O_PATH, following links inside the root (/etc/os-release -> ../usr/lib/os-release)
        handle = openat2_in_root(root, path, os.O_PATH)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    finally:
        os.close(handle)
    try:
        return os.pread(fd, MAX_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
