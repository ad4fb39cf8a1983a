"""The kernel's ``core_pattern``: the string that starts the pipe handler, and a
safe way to change it for a while.

The kernel splits the pattern at spaces *before* expanding the ``%``
specifiers (since Linux 5.3), so a comm with spaces stays one argument, but
a path in the pattern itself cannot contain spaces (there is no quoting).
The whole pattern must fit in 127 bytes: longer ones are cut silently by
the kernel, so ``core_pattern`` refuses them and ``swapped`` checks what
the kernel kept.

``/proc/sys/kernel/core_pattern`` is one setting for the whole host; every
tool that changes it for a while (tests, sample-core recipes, benchmarks)
should do it through ``swapped``, which holds ``LOCK`` for the duration and
puts the old value back only if nobody else changed it meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

CORE_PATTERN = "/proc/sys/kernel/core_pattern"
LOCK = "/run/lock/coretriage-core-pattern.lock"
MAX_PATTERN = 127  # CORENAME_MAX_SIZE (128) minus the NUL

# In the order collector.handler expects them; see its docstring.
SPECIFIERS = ("%P", "%i", "%I", "%s", "%t", "%u", "%g", "%d", "%F", "%E", "%e")


class PatternError(Exception):
    pass


def core_pattern(python: str, *, data_dir: str | None = None, spool: str | None = None,
                 module: str = "collector.handler") -> str:
    """``|PYTHON -I -m collector.handler [-d DATA] [-s SPOOL] %P %i ...``.

    ``-I`` (isolated mode): the kernel starts the handler with cwd ``/`` and
    an almost empty environment; nothing from either may change what runs.
    """
    for value in (python, data_dir, spool):
        if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
            raise PatternError(f"{value!r}: must be an absolute path without spaces")
    parts = ["|" + python, "-I", "-m", module]
    if data_dir:
        parts += ["-d", data_dir]
    if spool:
        parts += ["-s", spool]
    pattern = " ".join(parts + list(SPECIFIERS))
    if len(pattern.encode()) > MAX_PATTERN:
        raise PatternError(f"core_pattern would be {len(pattern.encode())} bytes; the kernel keeps "
                           f"{MAX_PATTERN} (use shorter paths or a wrapper script)")
    return pattern


def read_pattern() -> str:
    with open(CORE_PATTERN) as f:
        return f.read().rstrip("\n")


def write_pattern(pattern: str) -> None:
    with open(CORE_PATTERN, "w") as f:
        f.write(pattern + "\n")
    kept = read_pattern()
    if kept != pattern:
        raise PatternError(f"the kernel kept {kept!r}, not {pattern!r}")


_held = threading.local()


@contextlib.contextmanager
def pattern_lock(timeout: float = 600.0) -> Iterator[None]:
    """Exclusive use of core_pattern among cooperating tools (host-setup,
    tests, benchmarks). Reentrant within a thread: a test that holds it may
    crash sample programs, which take it again."""
    import time

    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth = depth
        return
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PatternError(f"{LOCK}: still held after {timeout:.0f} s") from None
                time.sleep(0.05)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
    finally:
        os.close(fd)


@contextlib.contextmanager
def swapped(pattern: str, timeout: float = 600.0, lock: bool = True) -> Iterator[str]:
    """Set core_pattern for the block; always put the previous value back,
    unless someone else changed it meanwhile (then raise rather than clobber).
    ``lock=False`` when the caller already holds ``pattern_lock``."""
    with pattern_lock(timeout) if lock else contextlib.nullcontext():
        old = read_pattern()
        try:
            write_pattern(pattern)
        except BaseException:
            write_pattern(old)  # e.g. the kernel refused or cut the new one
            raise
        try:
            yield old
        finally:
            current = read_pattern()
            if current == pattern:
                write_pattern(old)
            elif current != old:
                raise PatternError(f"core_pattern was changed by someone else to {current!r} "
                                   f"while it was set to {pattern!r}; left as it is (it was {old!r})")
