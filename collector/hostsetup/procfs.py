"""Reading (and, for sysctls, writing) /proc. ``proc`` is a parameter so tests
can point it at a fake tree; parsing helpers are pure."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collector.hostsetup.errors import HostSetupError
from collector.hostsetup.corelimit import CoreLimit, core_limit
from collector.process import parse_status


def sysctl_path(proc: Path, key: str) -> Path:
    return Path(proc) / "sys" / key.replace(".", "/")


def read_sysctl(proc: Path, key: str) -> str:
    return sysctl_path(proc, key).read_text().rstrip("\n")


def write_sysctl(proc: Path, key: str, value: str) -> None:
    """Write and read back: the kernel truncates core_pattern silently."""
    path = sysctl_path(proc, key)
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise HostSetupError(f"cannot set {key} ({path}): {exc.strerror or exc}") from None
    got = path.read_text().rstrip("\n")
    if got != value:
        raise HostSetupError(f"{key} reads back as {got!r} after writing {value!r}")


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    except OSError:  # ESRCH and friends while a process exits
        return None


def pids(proc: Path) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except FileNotFoundError:
        return []


def caught_signals(mask_hex: str) -> frozenset[int]:
    """SigCgt's hex mask: bit n-1 is signal n."""
    mask = int(mask_hex, 16)
    return frozenset(n + 1 for n in range(64) if mask >> n & 1)


@dataclass(frozen=True)
class HostProcess:
    """What host-setup's checks need of a running process."""

    pid: int
    comm: str
    core: CoreLimit | None  # None: limits unreadable
    caught: frozenset[int] = frozenset()  # signals with a handler installed
    nspid: tuple[int, ...] = ()  # the pid in each nested pid namespace, outermost first
    ppid: int | None = None


def proc_info(proc: Path, pid: int) -> HostProcess | None:
    base = Path(proc) / str(pid)
    comm = read_text(base / "comm")
    if comm is None:
        return None
    limits = read_text(base / "limits")
    status = parse_status(read_text(base / "status") or "")
    try:
        caught = caught_signals(status["SigCgt"]) if "SigCgt" in status else frozenset()
    except ValueError:
        caught = frozenset()
    nspid = tuple(int(p) for p in status.get("NSpid", "").split() if p.isdigit())
    ppid = int(status["PPid"]) if status.get("PPid", "").isdigit() else None
    return HostProcess(pid=pid, comm=comm.strip(), core=core_limit(limits) if limits else None,
                    caught=caught, nspid=nspid, ppid=ppid)


def find_by_comm(proc: Path, name: str) -> list[int]:
    """Pids whose comm is ``name`` (comm is at most 15 characters)."""
    name = name[:15]
    return [pid for pid in pids(proc) if (read_text(Path(proc) / str(pid) / "comm") or "").strip() == name]


def cmdline(proc: Path, pid: int) -> list[str]:
    raw = read_text(Path(proc) / str(pid) / "cmdline") or ""
    return [a for a in raw.split("\0") if a]
