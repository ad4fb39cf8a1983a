"""kernel.core_pattern: classify the current value and plan coretriage's.

The kernel keeps at most 127 characters (longer writes are silently
truncated), splits a pipe pattern on spaces into the handler's argv and
expands ``%`` specifiers in it. A ``@`` prefix (Linux 6.16+) sends cores to a
unix socket instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

CORE_PATTERN_MAX = 127  # CORENAME_MAX_SIZE (128) minus the terminating NUL

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
    if len(direct) > CORE_PATTERN_MAX:
        reasons.append(f"the command is {len(direct)} characters, core_pattern holds {CORE_PATTERN_MAX}")
    if any(any(c.isspace() for c in a) for a in fixed):
        reasons.append("a fixed argument holds a space")
    if any("%" in a for a in fixed):
        reasons.append("a fixed argument holds a '%'")
    if not reasons:
        return PatternPlan(pattern=direct)
    if any(c.isspace() for c in wrapper_path) or "%" in wrapper_path:
        raise ValueError(f"the wrapper path may not hold spaces or '%': {wrapper_path!r}")
    pattern = "|" + " ".join((wrapper_path, *passed))
    if len(pattern) > CORE_PATTERN_MAX:
        raise ValueError(f"even with a wrapper the pattern is {len(pattern)} characters "
                         f"(max {CORE_PATTERN_MAX}): {pattern!r}")
    return PatternPlan(pattern=pattern, wrapper_command=fixed, reason="; ".join(reasons))
