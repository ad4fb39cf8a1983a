"""``coretriage host-setup doctor``: is this host set up to capture crashes?

``run_checks`` gathers facts from /proc, the file system, the docker CLI and
the clock, and hands them to the pure checks in ``checks.py``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from collector.hostsetup import kmsg, procfs, record, uwsgi
from collector.hostsetup.checks import (FAIL, OK, WARN, Check, checks_json, clock_check, container_checks,
                              core_pattern_check, core_pipe_limit_check, daemon_limit_check, exit_code,
                              format_checks, free_space_check, no_containers_check, suid_dumpable_check,
                              uwsgi_check)
from collector.hostsetup.clock import ClockStatus, clock_status
from collector.hostsetup.containers import ContainerInfo, docker_cli_containers, scan_proc_containers
from collector.corepattern import classify

__all__ = ["run_checks", "Check", "format_checks", "checks_json", "exit_code", "OK", "WARN", "FAIL"]

DockerSource = Callable[[], "list[ContainerInfo] | None"]


def run_checks(data_dir: Path, *, proc: Path = Path("/proc"), root: Path = Path("/"),
               docker: DockerSource | None = docker_cli_containers,
               clock: Callable[[], ClockStatus] | None = clock_status,
               kernel_log: Path | None = kmsg.KMSG) -> list[Check]:
    """Every check, in a stable order. ``docker`` lists running containers
    (None from it, or ``docker=None``, falls back to scanning /proc cgroups);
    ``clock=None`` skips the clock check, ``kernel_log=None`` the count of
    crashes the kernel skipped."""
    proc, root, data_dir = Path(proc), Path(root), Path(data_dir)
    checks: list[Check] = []

    try:
        rec = record.load(data_dir)
    except ValueError as exc:
        rec = None
        checks.append(Check("host-setup record", WARN, str(exc)))
    raw = _sysctl(proc, "kernel.core_pattern")
    if raw is None:
        checks.append(Check("core_pattern", FAIL, f"cannot read {procfs.sysctl_path(proc, 'kernel.core_pattern')}"))
        pattern = classify("")
    else:
        pattern = classify(raw, rec.core_pattern if rec else None)
        exists = None
        if pattern.kind == "pipe" and pattern.handler:
            handler = root / pattern.handler.lstrip("/")
            exists = handler.is_file() and os.access(handler, os.X_OK)
        checks.append(core_pattern_check(pattern, handler_exists=exists,
                                         recorded=rec.core_pattern if rec else None))
        limit = _sysctl(proc, "kernel.core_pipe_limit")
        if limit is not None:
            skipped = kmsg.skipped_dumps(kernel_log) if kernel_log is not None else None
            c = core_pipe_limit_check(pattern, limit, skipped)
            if c:
                checks.append(c)

    suid = _sysctl(proc, "fs.suid_dumpable")
    if suid is not None:
        checks.append(suid_dumpable_check(suid))

    for daemon in ("dockerd", "containerd"):
        infos = [i for i in (procfs.proc_info(proc, pid) for pid in procfs.find_by_comm(proc, daemon)) if i]
        checks.append(daemon_limit_check(daemon, infos, pattern))

    containers = docker() if docker is not None else None
    source = "docker inspect"
    if containers is None:
        containers, source = scan_proc_containers(proc), "docker CLI not answering; scanned /proc cgroups"
    if not containers:
        checks.append(no_containers_check(source))
    for c in containers:
        checks.extend(container_checks(c, procfs.proc_info(proc, c.pid), pattern))

    for pid in uwsgi.masters(proc):  # servers whose own crash handler keeps cores from being written
        checks.append(uwsgi_check(pid, *uwsgi.master_facts(proc, pid)))

    checks.append(_free_space_check(data_dir))
    if clock is not None:
        checks.append(clock_check(clock()))
    return checks


def _sysctl(proc: Path, key: str) -> str | None:
    try:
        return procfs.read_sysctl(proc, key)
    except OSError:
        return None


def _free_space_check(data_dir: Path) -> Check:
    path = data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return free_space_check(str(data_dir), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
