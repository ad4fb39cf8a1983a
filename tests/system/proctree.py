"""The processes below a process, and the gdb among them: how the fault
tests find the analysis a worker is running, to stop it mid-way."""

from __future__ import annotations

import os
from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (through PID namespaces too: the host sees them all)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def gdb_of(pid: int) -> int | None:
    """A gdb running below ``pid`` (a worker's analysis), or None."""
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip().startswith("gdb"):
                return child
        except OSError:
            continue
    return None
