"""Who sent the fatal signal, by name: the core's siginfo gives the sender's
pid and uid (``collector.corehead.signal_sender``) but not its name, and
nothing does once the sender is gone, so the handler looks it up while it
runs. Best effort: a sender that already exited, or one that cannot be told
apart from another process, gives no name (the report then shows the pid and
uid alone).

The pid is the crashed process's pid namespace's number. The sender is in
that namespace or in one below it (the kernel gives 0 for a sender above):
in the handler's own namespace the pid is the /proc entry; in a container's,
the process whose ``NSpid`` has the pid at the crashed process's level, in the
same cgroup as the crashed process (a container's processes share one; two
containers' pid 7 do not). The handler has given up its capabilities by
then, so only world-readable files are read (``status``, ``cgroup``,
``comm``), never a namespace link.
"""

from __future__ import annotations

import os

from collector.bundle import display

MAX_PROCESSES = 65_536  # /proc entries looked at, at most


def nspid(status: bytes) -> tuple[int, ...] | None:
    """The ``NSpid`` line of /proc/PID/status: the pid in each pid namespace,
    outermost first."""
    for line in status.split(b"\n"):
        if line.startswith(b"NSpid:"):
            try:
                return tuple(int(x) for x in line[6:].split())
            except ValueError:
                return None
    return None


def _read(path: str, limit: int = 1 << 16) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def sender_comm(pid: int, crashed_nspid: tuple[int, ...], cgroup: str | None,
                proc: str = "/proc") -> str | None:
    """The name (comm) of the process ``pid`` names in the pid namespace of
    the crashed process (whose ``NSpid`` is ``crashed_nspid``, whose cgroup
    file reads ``cgroup``); None when it is not found, not the only match,
    or the crashed process itself."""
    if pid <= 0 or not crashed_nspid or pid == crashed_nspid[-1]:
        return None
    level = len(crashed_nspid) - 1
    if level == 0:
        candidates = [str(pid)]
    else:
        if cgroup is None:
            return None
        try:
            candidates = [e for e in os.listdir(proc) if e.isdigit()][:MAX_PROCESSES]
        except OSError:
            return None
    found = None
    for entry in candidates:
        status = _read(f"{proc}/{entry}/status")
        ids = nspid(status) if status else None
        if not ids or len(ids) <= level or ids[level] != pid:
            continue
        if level:
            raw = _read(f"{proc}/{entry}/cgroup")
            if raw is None or display(raw).strip() != cgroup:
                continue
        comm = _read(f"{proc}/{entry}/comm", 64)
        if comm is None:
            continue
        if found is not None:
            return None  # two candidates: no guess
        found = display(comm.rstrip(b"\n"))
    return found
