"""/proc/<pid>/limits: a process's core size ulimit (soft and hard), which
host-setup checks for the daemons and containers whose cores it wants."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<name>.+?)\s{2,}(?P<soft>\S+)\s+(?P<hard>\S+)(?:\s+(?P<units>\S+))?\s*$")


@dataclass(frozen=True)
class CoreLimit:
    soft: int | None  # None: unlimited
    hard: int | None

    @staticmethod
    def show(value: int | None) -> str:
        return "unlimited" if value is None else str(value)

    def __str__(self) -> str:
        return f"soft {self.show(self.soft)}, hard {self.show(self.hard)}"


def parse_limits(text: str) -> dict[str, CoreLimit]:
    """{'Max core file size': CoreLimit(0, None), ...}; the header line is skipped."""
    out: dict[str, CoreLimit] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m["name"].strip() == "Limit":
            continue
        try:
            out[m["name"].strip()] = CoreLimit(_value(m["soft"]), _value(m["hard"]))
        except ValueError:
            continue
    return out


def _value(word: str) -> int | None:
    return None if word == "unlimited" else int(word)


def core_limit(text: str) -> CoreLimit | None:
    return parse_limits(text).get("Max core file size")
