"""The crashed process: one owner of its ``/proc/PID`` handle and its pidfd.

``Process`` (a context manager, like Apport's ``ProcPid``) opens
``/proc/PID`` as a directory first thing, before anything else can happen to
the pid, takes a pidfd (the kernel's ``%F`` / ``SO_PEERPIDFD``, else
``pidfd_open``) and the start time, and reads every file relative to that
handle. ``read`` returns a ``ProcInfo`` only when the handle still names the
crashed process (pidfd not exited, same start time, ``CoreDumping: 1``);
otherwise an empty one, and the reason goes to ``problems``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from collector.bundle import display
from analyzer.secrets import mask_argv, mask_environ

CHUNK = 1 << 20
PROC_MAX = 1 << 20  # most bytes read from one /proc file
MAPS_MAX = 8 << 20
NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")


@dataclass(frozen=True)
class ProcInfo:
    """What /proc/PID said, secrets already masked."""

    exe: str | None = None
    cwd: str | None = None
    cmdline: tuple[str, ...] = ()
    environ: dict[str, str] = field(default_factory=dict)
    maps: tuple[str, ...] = ()  # mapped file paths, each once
    maps_raw: bytes = b""  # for collector.sysroot
    cgroup: str | None = None
    namespaces: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)


# ---- pure parsers ----

def parse_status(raw: str | bytes) -> dict[str, str]:
    """``Key:\\tvalue`` lines (/proc/PID/status, fdinfo) as a dict."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    out = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def mapped_paths(raw: bytes) -> list[str]:
    """File paths in /proc/PID/maps, in address order, each once."""
    seen: dict[str, None] = {}
    for line in raw.split(b"\n"):
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(b"/"):
            seen.setdefault(display(parts[5]), None)
    return list(seen)


def parse_environ(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        if entry:
            name, _, value = entry.partition(b"=")
            env.setdefault(display(name), display(value))
    return env


def _read_at(dir_fd: int, name: str, limit: int = PROC_MAX) -> tuple[bytes, bool]:
    """(content, truncated) of a /proc file read relative to ``dir_fd``."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        parts, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(CHUNK, limit - size))
            if not chunk:
                return b"".join(parts), False
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts), bool(os.read(fd, 1))
    finally:
        os.close(fd)


def _starttime(proc_fd: int) -> int:
    stat, _ = _read_at(proc_fd, "stat")
    return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


class Process:
    """``with Process(pid, pidfd, problems) as proc:`` -- ``proc.fd`` is the
    ``/proc/PID`` directory (None if it could not be opened)."""

    def __init__(self, pid: int, pidfd: int | None, problems: list[str]):
        self.pid = pid
        self.problems = problems
        self._given_pidfd = pidfd  # the kernel's; its owner closes it
        self.fd: int | None = None
        self.pidfd: int | None = None
        self._own_pidfd = False
        self._start: int | None = None

    def __enter__(self) -> "Process":
        try:
            self.fd = os.open(f"/proc/{self.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self.problems.append(f"/proc/{self.pid}: {exc.strerror}")
        self._open_pidfd()
        if self.fd is not None:
            try:
                self._start = _starttime(self.fd)
            except (OSError, ValueError, IndexError) as exc:
                self.problems.append(f"/proc/PID/stat: {_why(exc)}")
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._own_pidfd and self.pidfd is not None:
            os.close(self.pidfd)
        self.pidfd = None

    def _open_pidfd(self) -> None:
        fd = self._given_pidfd
        if fd is not None:
            try:
                with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
                    owner = parse_status(f.read()).get("Pid")
            except OSError:
                self.problems.append(f"%F: fd {fd} is not open")
            else:
                if owner == str(self.pid):
                    self.pidfd = fd
                    return
                self.problems.append(f"%F: fd {fd} is not a pidfd for pid {self.pid} (Pid: {owner!r})")
        try:
            self.pidfd, self._own_pidfd = os.pidfd_open(self.pid), True
        except (OSError, AttributeError) as exc:
            self.problems.append(f"pidfd_open({self.pid}): {_why(exc)}")

    def _exited(self) -> bool:
        import select

        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def identity_problem(self, status: dict[str, str]) -> str | None:
        """None when /proc/PID is the crashed process, else why not. Without a
        pidfd (kernels before 5.3) only the start time and CoreDumping vouch."""
        if self.pidfd is not None and self._exited():
            return "the process exited before its core was read"
        try:
            if self._start is None or _starttime(self.fd) != self._start:
                return "the process's start time changed (pid reused)"
        except (OSError, ValueError, IndexError):
            return "the process is gone"
        if status.get("CoreDumping", "1") != "1":
            return "the process at this pid is not dumping core"
        return None

    def read(self, secret_names: tuple[str, ...]) -> ProcInfo:
        """Everything the bundle keeps from /proc, masked; empty unless the
        handle is still the crashed process."""
        if self.fd is None:
            return ProcInfo()
        info = self._read(secret_names)
        why = self.identity_problem(info.status)
        if why is not None:
            self.problems.append(f"/proc/{self.pid} details discarded: {why}")
            return ProcInfo()
        return info

    def _read(self, secret_names: tuple[str, ...]) -> ProcInfo:
        fd, problems = self.fd, self.problems

        def attempt(what: str, fn):
            try:
                return fn()
            except (OSError, ValueError, IndexError) as exc:
                problems.append(f"/proc/PID/{what}: {_why(exc)}")
                return None

        def text(name: str, limit: int = PROC_MAX) -> bytes:
            raw, cut = _read_at(fd, name, limit)
            if cut:
                problems.append(f"/proc/PID/{name}: longer than {limit} bytes, cut")
            return raw

        def link(name: str) -> str | None:
            target = attempt(name, lambda: os.readlink(name.encode(), dir_fd=fd))
            return display(target) if target is not None else None

        values: dict = {"exe": link("exe"), "cwd": link("cwd")}
        raw = attempt("cmdline", lambda: text("cmdline"))
        if raw:
            values["cmdline"] = tuple(mask_argv([display(a) for a in raw.rstrip(b"\0").split(b"\0")],
                                                secret_names))
        raw = attempt("environ", lambda: text("environ"))
        if raw:
            values["environ"] = mask_environ(parse_environ(raw), secret_names)
        raw = attempt("maps", lambda: text("maps", MAPS_MAX))
        if raw:
            values["maps"], values["maps_raw"] = tuple(mapped_paths(raw)), raw
        raw = attempt("cgroup", lambda: text("cgroup"))
        if raw is not None:
            values["cgroup"] = display(raw).strip()
        raw = attempt("status", lambda: text("status"))
        if raw:
            values["status"] = parse_status(raw)
        namespaces = {ns: link(f"ns/{ns}") for ns in NAMESPACES}
        values["namespaces"] = {ns: v for ns, v in namespaces.items() if v is not None}
        return ProcInfo(**values)
