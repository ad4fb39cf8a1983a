"""/etc/docker/daemon.json: add an unlimited default core ulimit, keep everything else."""

from __future__ import annotations

import json
from dataclasses import dataclass

from collector.hostsetup.errors import DaemonJsonError

CORE_ULIMIT = {"Name": "core", "Hard": -1, "Soft": -1}


@dataclass(frozen=True)
class Merged:
    text: str
    changed: bool


def merge_core_ulimit(current: str | None, *, where: str = "daemon.json") -> Merged:
    """``current`` is the file's text, or None when it does not exist."""
    if current is None or not current.strip():
        config: dict = {}
    else:
        try:
            config = json.loads(current)
        except json.JSONDecodeError as exc:
            raise DaemonJsonError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} "
                                  f"column {exc.colno}); fix it or move it away, nothing was changed") from None
        if not isinstance(config, dict):
            raise DaemonJsonError(f"{where} holds a JSON {type(config).__name__}, not an object; "
                                  "nothing was changed")
    ulimits = config.get("default-ulimits", {})
    if not isinstance(ulimits, dict):
        raise DaemonJsonError(f'{where}: "default-ulimits" is not an object; nothing was changed')
    if current is not None and ulimits.get("core") == CORE_ULIMIT:
        return Merged(text=current, changed=False)
    config["default-ulimits"] = {**ulimits, "core": dict(CORE_ULIMIT)}
    return Merged(text=json.dumps(config, indent=2) + "\n", changed=True)
