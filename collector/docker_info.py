"""What Docker knows about a crashed container: name, image, Compose labels,
restart count. Optional: without Docker (or with the daemon down) the crash
is still recorded with its container id."""

from __future__ import annotations

import functools
import logging
import re

log = logging.getLogger("coretriage.collector")
SOCKET = "unix:///var/run/docker.sock"
_ID = re.compile(r"[0-9a-f]{64}")


@functools.lru_cache(maxsize=1)
def _client():
    import docker  # the Docker SDK; imported only when a container crashed

    return docker.DockerClient(base_url=SOCKET, timeout=5)


def container_info(container_id: str) -> dict:
    if not _ID.fullmatch(container_id or ""):
        return {}
    try:
        attrs = _client().api.inspect_container(container_id)
    except Exception as exc:  # no Docker, container gone, daemon down: metadata stays as captured
        log.info("docker inspect %s: %s", container_id[:12], str(exc).splitlines()[0] if str(exc) else exc)
        return {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    return {
        "container_name": (attrs.get("Name") or "").lstrip("/") or None,
        "image": config.get("Image"),
        "image_id": attrs.get("Image"),
        "labels": labels,
        "compose_project": labels.get("com.docker.compose.project"),
        "compose_service": labels.get("com.docker.compose.service"),
        "restart_count": attrs.get("RestartCount"),
        "init": (attrs.get("HostConfig") or {}).get("Init"),
    }
