"""Running containers: from the docker CLI (``docker inspect``), else by
scanning /proc/*/cgroup for Docker container ids."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from collector.hostsetup import procfs

INITS = frozenset({"docker-init", "tini", "tini-static", "dumb-init", "catatonit", "s6-svscan"})
_CGROUP_ID = re.compile(r"(?:/docker/|/docker-|/docker/containers/)([0-9a-f]{64})(?:\.scope)?(?:/|$)")


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    pid: int  # host pid of the container's PID 1
    init: bool | None = None  # HostConfig.Init (docker run --init); None: not known
    image: str = ""
    source: str = "docker"  # "docker" (docker inspect) or "proc" (cgroup scan)

    @property
    def label(self) -> str:
        return self.name or self.id[:12]


def parse_docker_inspect(text: str) -> list[ContainerInfo]:
    """``docker inspect`` output -> the running containers in it."""
    out = []
    for c in json.loads(text or "[]"):
        state = c.get("State") or {}
        pid = state.get("Pid") or 0
        if not state.get("Running") or pid <= 0:
            continue
        host = c.get("HostConfig") or {}
        out.append(ContainerInfo(id=c.get("Id", ""), name=(c.get("Name") or "").lstrip("/"), pid=int(pid),
                                 init=host.get("Init") if isinstance(host.get("Init"), bool) else None,
                                 image=(c.get("Config") or {}).get("Image", ""), source="docker"))
    return out


def docker_cli_containers(timeout: float = 15.0) -> list[ContainerInfo] | None:
    """None when the docker CLI is missing or the daemon does not answer."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        ps = subprocess.run([docker, "ps", "-q", "--no-trunc"], capture_output=True, text=True, timeout=timeout)
        if ps.returncode != 0:
            return None
        ids = ps.stdout.split()
        if not ids:
            return []
        inspect = subprocess.run([docker, "inspect", *ids], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if inspect.returncode != 0 and not inspect.stdout.strip():
        return None  # containers may exit between ps and inspect; partial output is fine
    try:
        return parse_docker_inspect(inspect.stdout)
    except (ValueError, TypeError, AttributeError):
        return None


def container_id_from_cgroup(text: str) -> str | None:
    """The Docker container id in a /proc/<pid>/cgroup, for both the cgroupfs
    (``/docker/<id>``) and systemd (``/system.slice/docker-<id>.scope``) drivers."""
    for line in text.splitlines():
        m = _CGROUP_ID.search(line.split(":", 2)[-1])
        if m:
            return m[1]
    return None


def scan_proc_containers(proc: Path) -> list[ContainerInfo]:
    """Each container's PID 1: a process in a Docker cgroup whose pid in its
    own namespace (last NSpid) is 1."""
    found: dict[str, ContainerInfo] = {}
    for pid in procfs.pids(proc):
        cid = container_id_from_cgroup(procfs.read_text(Path(proc) / str(pid) / "cgroup") or "")
        if cid is None or cid in found:
            continue
        info = procfs.proc_info(proc, pid)
        if info is None or not info.nspid or info.nspid[-1] != 1:
            continue
        found[cid] = ContainerInfo(id=cid, name="", pid=pid, init=info.comm in INITS or None, source="proc")
    return list(found.values())
