"""Which container a process ran in, from the text of ``/proc/<pid>/cgroup``.

Pure: text in, a frozen ``ContainerRef`` (or None) out. The handler reads
the file from the host's cgroup namespace (the kernel starts it there), so
paths are complete. Layouts recognised, cgroup v1 (``N:controllers:/path``)
and v2 (``0::/path``) alike:

==========================  ===================================================
Docker, cgroupfs driver     ``/docker/<id>``
Docker, systemd driver      ``/system.slice/docker-<id>.scope``
containerd                  ``/containerd/<id>``, ``/<namespace>/<id>`` for the
                            namespaces ``default``, ``moby``, ``k8s.io``;
                            ``cri-containerd-<id>.scope``, ``nerdctl-<id>.scope``
Kubernetes, cgroupfs        ``/kubepods/<qos>/pod<uid>/<id>``, ``/kubepods/pod<uid>/<id>``
Kubernetes, systemd         ``/kubepods.slice/kubepods-<qos>.slice/
                            kubepods-<qos>-pod<uid_with_underscores>.slice/
                            {cri-containerd,docker,crio}-<id>.scope``
CRI-O                       ``crio-<id>.scope`` (never ``crio-conmon-<id>.scope``,
                            which is the monitor, not the container)
Podman                      ``libpod-<id>.scope``, ``/libpod_parent/libpod-<id>``
==========================  ===================================================

An id is accepted only as exactly 64 lowercase hex digits. With nested
containers (Docker in Docker) the outermost id is returned: it is the one
the host's engine knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = re.compile(r"[0-9a-f]{64}")
_SCOPE = re.compile(r"(?P<prefix>docker|cri-containerd|crio|libpod|nerdctl)-(?P<id>[0-9a-f]{64})(?:\.scope)?")
_POD_CGROUPFS = re.compile(r"pod(?P<uid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_POD_SYSTEMD = re.compile(
    r"kubepods(?:-[a-z]+)?-pod(?P<uid>[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice")

_SCOPE_RUNTIME = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o",
                  "libpod": "podman", "nerdctl": "containerd"}
# parents under which a bare 64-hex directory is a container
_BARE_PARENTS = {"docker": "docker", "containerd": "containerd", "moby": "containerd",
                 "default": "containerd", "k8s.io": "containerd", "libpod_parent": "podman"}


@dataclass(frozen=True)
class ContainerRef:
    runtime: str  # docker, containerd, cri-o, podman; "kubernetes" when the path does not say
    id: str  # 64 lowercase hex digits
    pod_uid: str | None = None  # Kubernetes pod UID, when under kubepods
    cgroup_path: str = ""


def is_container_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def cgroup_paths(text: str) -> list[str]:
    """The paths of every hierarchy, the unified (v2) one first."""
    unified, others = [], []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        (unified if parts[0] == "0" and parts[1] == "" else others).append(parts[2])
    return unified + others


def container_from_path(path: str) -> ContainerRef | None:
    components = [c for c in path.split("/") if c and c not in (".", "..")]
    pod_uid = None
    in_kubepods = False
    for i, comp in enumerate(components):
        if comp == "kubepods" or comp.startswith("kubepods.") or comp.startswith("kubepods-"):
            in_kubepods = True
        if in_kubepods and pod_uid is None:
            m = _POD_SYSTEMD.fullmatch(comp)
            if m:
                pod_uid = m["uid"].replace("_", "-")
            else:
                m = _POD_CGROUPFS.fullmatch(comp)
                if m:
                    pod_uid = m["uid"]
        m = _SCOPE.fullmatch(comp)
        if m:
            return _ref(_SCOPE_RUNTIME[m["prefix"]], m["id"], pod_uid, path)
        if _ID.fullmatch(comp):
            parent = components[i - 1] if i else ""
            if in_kubepods and pod_uid is not None:
                return _ref("kubernetes", comp, pod_uid, path)  # cgroupfs kubelet: runtime not named
            if parent in _BARE_PARENTS:
                return _ref(_BARE_PARENTS[parent], comp, None, path)
    return None


def _ref(runtime: str, cid: str, pod_uid: str | None, path: str) -> ContainerRef | None:
    if not is_container_id(cid):  # belt and braces: nothing else is ever returned
        return None
    return ContainerRef(runtime=runtime, id=cid, pod_uid=pod_uid, cgroup_path=path)


def container_from_cgroup(text: str) -> ContainerRef | None:
    """The container of a process, from its ``/proc/<pid>/cgroup`` text."""
    for path in cgroup_paths(text):
        ref = container_from_path(path)
        if ref is not None:
            return ref
    return None
