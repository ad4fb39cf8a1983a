"""Which build crashed: what the crash-storm limit counts by.

A path is the process's own choice (a copy under a new name is a new path),
so the executable is named by what it is: its GNU build-id, else a hash of
its content. It is read through ``/proc/PID/exe``, the very file the kernel
executed, never by path. A build-id can be forged, which is why the rate
limit also keys on the container and the user (``collector.ratelimit``):
a forger spends only its own budget.
"""

from __future__ import annotations

import hashlib
import os
import stat

from analyzer.elfid import build_id, fd_reader
from collector.sysroot import hash_fd

HASH_MAX = 256 << 20  # bytes hashed at most (then the size is mixed in): a budget, not a weakness


def content_key(fd: int, size: int) -> str:
    digest = hash_fd(fd, min(size, HASH_MAX))
    if size > HASH_MAX:  # the size tells apart big files alike in their first HASH_MAX bytes
        digest = hashlib.sha256(f"{digest}\0{size}".encode()).hexdigest()
    return "sha256:" + digest


def exe_build(proc_fd: int | None, fallback: str, problems: list[str]) -> str:
    """``build-id:<hex>``, ``sha256:<hex>``, or ``path:<fallback>`` (with a
    problem) when the executable cannot be read."""
    if proc_fd is not None:
        try:
            fd = os.open("exe", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
        except OSError as exc:
            problems.append(f"/proc/PID/exe unreadable ({exc.strerror}): rate limit keyed by the path")
        else:
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    bid = build_id(fd_reader(fd))
                    return f"build-id:{bid}" if bid else content_key(fd, st.st_size)
            except Exception as exc:  # a hostile file must not cost the crash its record
                why = getattr(exc, "strerror", None) or type(exc).__name__
                problems.append(f"/proc/PID/exe unreadable ({why}): rate limit keyed by the path")
            finally:
                os.close(fd)
    return f"path:{fallback}"
