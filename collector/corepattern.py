"""The kernel's ``core_pattern``, in one place: the ``%`` specifiers the pipe
handler takes, the command line that starts it, parsing a pattern back
(``classify``: whose is it?), the 127-byte rule, and the lock every tool that
changes it takes.

The kernel splits a ``|`` pattern at spaces *before* expanding the ``%``
specifiers (since Linux 5.3), so a comm with spaces stays one argument, but
a path in the pattern itself cannot contain spaces (there is no quoting).
The whole pattern must fit in ``MAX_PATTERN`` (127) bytes: longer ones are
cut silently by the kernel, so ``core_pattern`` and ``plan_core_pattern``
refuse them and ``write_pattern`` checks what the kernel kept. A ``@``
prefix (Linux 6.16+) sends cores to a unix socket instead.

``/proc/sys/kernel/core_pattern`` is one setting for the whole host; every
tool that changes it (host-setup, tests, sample-core recipes, benchmarks)
does it under ``pattern_lock``; ``swapped`` sets it for a while and puts the
old value back only if nobody else changed it meanwhile.

The specifiers ``collector.handler`` takes, in this order (``SPECIFIERS``):

====  =====================================================================
%P    pid of the crashed process in the initial pid namespace. ``/proc/%P``
      is opened as a directory first thing, and every file is read through
      that handle, before a byte of the core is read: the kernel keeps the
      process (``CoreDumping: 1``) while the pipe is full. Set
      ``kernel.core_pipe_limit`` > 0 (systemd-coredump uses 16) and the kernel
      holds it until the handler closes stdin, which it does as soon as the
      core is read, or cut short (``max_core_size``, ``max_core_seconds``); with the default 0, a core smaller than the pipe
      (64 KiB) lets the process go before /proc could be read.
%i    tid of the crashing thread in its own pid namespace (the numbering
      of the core's notes)
%I    the same thread in the initial pid namespace
%s    signal number
%t    time of the dump, seconds since the epoch (first part of the bundle id)
%u    real uid of the process, cross-checked with ``/proc/%P/status``
%g    real gid, likewise
%d    dump mode: 1 normal; 2 a set-uid or non-dumpable process dumped
      because ``fs.suid_dumpable=2`` (root-only): ``setuid_cores`` in
      ``collector.toml`` says what becomes of its core (``collector.policy``)
%F    a pidfd for the crashed process, put by the kernel at that fd number
      (Linux 6.16+; older kernels expand it to an empty argument and the
      handler falls back to ``pidfd_open(%P)``). It proves that ``/proc/%P``
      is the crashed process and not a newcomer that reused the pid.
%E    executable path with ``/`` written as ``!``; only a fallback when
      ``/proc/%P/exe`` cannot be read (ambiguous when a name holds ``!``)
%e    comm, the thread name (15 bytes, any bytes: spaces, newlines, ``..``).
      Last, so that with a kernel older than 5.3 (which split the pattern
      after expanding it) the rest is joined back.
====  =====================================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from analyzer.errors import CoretriageError

CORE_PATTERN = "/proc/sys/kernel/core_pattern"
LOCK = "/run/lock/coretriage-core-pattern.lock"
# A child of a process holding pattern_lock (e.g. `coretriage host-setup
# install` run by a test) is given the lock's fd and its number here.
LOCK_FD_ENV = "CORETRIAGE_PATTERN_LOCK_FD"
MAX_PATTERN = 127  # CORENAME_MAX_SIZE (128) minus the NUL

# In the order collector.handler expects them; see the table above.
SPECIFIERS = ("%P", "%i", "%I", "%s", "%t", "%u", "%g", "%d", "%F", "%E", "%e")


class PatternError(CoretriageError):
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


def _inherited_lock() -> int | None:
    """The lock fd a parent holding ``pattern_lock`` passed down (``lock_for_child``):
    the same open file, so flock on it does not wait for the parent."""
    value = os.environ.get(LOCK_FD_ENV, "")
    if not value.isdigit():
        return None
    try:
        mine, lock = os.fstat(int(value)), os.stat(LOCK)
    except OSError:
        return None
    return int(value) if (mine.st_dev, mine.st_ino) == (lock.st_dev, lock.st_ino) else None


def _flock(fd: int, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise PatternError(f"{LOCK}: still held after {timeout:.0f} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def pattern_lock(timeout: float = 600.0) -> Iterator[None]:
    """Exclusive use of core_pattern among cooperating tools (host-setup,
    tests, benchmarks). Reentrant within a thread: a test that holds it may
    crash sample programs or install, which take it again; and a child
    process started with ``lock_for_child()`` shares it."""
    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth = depth
        return
    inherited = _inherited_lock()
    if inherited is not None:
        fd = inherited
    else:
        os.makedirs(os.path.dirname(LOCK), exist_ok=True)
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _flock(fd, timeout)
        _held.depth, _held.fd = 1, fd
        try:
            yield
        finally:
            _held.depth, _held.fd = 0, None
    finally:
        if fd != inherited:  # the parent's lock is the parent's to release
            os.close(fd)


def lock_for_child() -> dict:
    """``subprocess`` keyword arguments that hand the ``pattern_lock`` this
    thread holds to a child (``{}`` when none is held)."""
    fd = getattr(_held, "fd", None) if getattr(_held, "depth", 0) else None
    if fd is None:
        return {}
    return {"pass_fds": (fd,), "env": {**os.environ, LOCK_FD_ENV: str(fd)}}


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


# ---- reading a pattern back, and planning one for host-setup ----

APPORT = "Apport"
SYSTEMD_COREDUMP = "systemd-coredump"
ABRT = "ABRT"
CORETRIAGE = "coretriage"

# (owner, substring), first match wins; checked after coretriage's own pattern.
_KNOWN_HANDLERS = (
    (SYSTEMD_COREDUMP, "systemd-coredump"),
    (APPORT, "apport"),
    (ABRT, "abrt-hook-ccpp"),
    (ABRT, "abrt"),
)
_CORETRIAGE_MARKS = ("coretriage", "collector.handler")


@dataclass(frozen=True)
class CorePattern:
    raw: str
    kind: str  # "pipe" | "file" | "socket" | "empty"
    argv: tuple[str, ...] = ()  # pipe: the handler's argv as the kernel splits it
    handler: str | None = None  # pipe: argv[0]; socket: the socket path
    owner: str | None = None  # APPORT, SYSTEMD_COREDUMP, ABRT, CORETRIAGE or None (unknown)

    @property
    def is_coretriage(self) -> bool:
        return self.owner == CORETRIAGE

    @property
    def is_other_handler(self) -> bool:
        """A pipe or socket that is not coretriage's: installing over it needs --replace."""
        return self.kind in ("pipe", "socket") and not self.is_coretriage

    def describe(self) -> str:
        """'Apport (/usr/share/apport/apport)', 'the pipe handler /bin/false'..."""
        where = self.handler or self.raw
        if self.owner and self.owner != CORETRIAGE:
            return f"{self.owner} ({where})"
        return f"the {'socket' if self.kind == 'socket' else 'pipe'} handler {where}"


def classify(raw: str, ours: str | None = None) -> CorePattern:
    """Classify a core_pattern value (as read, trailing newline allowed).
    ``ours`` is the pattern recorded by an earlier install, if any."""
    value = raw.rstrip("\n")
    stripped = value.strip()
    if not stripped:
        return CorePattern(raw=value, kind="empty")
    if stripped.startswith("|"):
        argv = tuple(a for a in stripped[1:].split(" ") if a)
        kind, handler = "pipe", (argv[0] if argv else None)
    elif stripped.startswith("@"):
        argv, kind, handler = (), "socket", stripped.lstrip("@")
    else:
        return CorePattern(raw=value, kind="file")
    return CorePattern(raw=value, kind=kind, argv=argv, handler=handler, owner=_owner(stripped, ours))


def _owner(value: str, ours: str | None) -> str | None:
    if ours is not None and value == ours.strip():
        return CORETRIAGE
    low = value.lower()
    if any(mark in low for mark in _CORETRIAGE_MARKS):
        return CORETRIAGE
    for owner, mark in _KNOWN_HANDLERS:
        if mark in low:
            return owner
    return None


@dataclass(frozen=True)
class PatternPlan:
    """What to write: the pattern, and the wrapper script's command if one is needed."""

    pattern: str
    wrapper_command: tuple[str, ...] | None = None  # the argv the wrapper execs before "$@"
    reason: str = ""  # why a wrapper is needed


_SPECIFIER = re.compile(r"%.")


def plan_core_pattern(handler_argv: list[str] | tuple[str, ...], wrapper_path: str) -> PatternPlan:
    """``|`` + the handler argv if the kernel can hold and split it as it is;
    otherwise ``|wrapper %P %i ...`` where the wrapper execs the fixed part.

    The fixed part is the argv before the first element with a ``%``
    specifier; the rest is passed by the kernel. A wrapper is needed when the
    pattern is longer than 127 characters or a fixed element holds a space
    (the kernel splits on it) or a ``%`` (the kernel would expand it)."""
    argv = tuple(str(a) for a in handler_argv)
    if not argv or not argv[0]:
        raise ValueError("the handler command is empty")
    if not PurePosixPath(argv[0]).is_absolute():
        raise ValueError(f"the handler must be an absolute path (the kernel runs it with no PATH): {argv[0]!r}")
    split = next((i for i, a in enumerate(argv) if _SPECIFIER.search(a)), len(argv))
    fixed, passed = argv[:split], argv[split:]
    bad = [a for a in passed if not a or any(c.isspace() for c in a)]
    if bad:
        raise ValueError(f"arguments after the first %-specifier may not be empty or hold spaces: {bad!r}")
    direct = "|" + " ".join(argv)
    reasons = []
    if len(direct) > MAX_PATTERN:
        reasons.append(f"the command is {len(direct)} characters, core_pattern holds {MAX_PATTERN}")
    if any(any(c.isspace() for c in a) for a in fixed):
        reasons.append("a fixed argument holds a space")
    if any("%" in a for a in fixed):
        reasons.append("a fixed argument holds a '%'")
    if not reasons:
        return PatternPlan(pattern=direct)
    if any(c.isspace() for c in wrapper_path) or "%" in wrapper_path:
        raise ValueError(f"the wrapper path may not hold spaces or '%': {wrapper_path!r}")
    pattern = "|" + " ".join((wrapper_path, *passed))
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"even with a wrapper the pattern is {len(pattern)} characters "
                         f"(max {MAX_PATTERN}): {pattern!r}")
    return PatternPlan(pattern=pattern, wrapper_command=fixed, reason="; ".join(reasons))
