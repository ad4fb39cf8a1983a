"""/proc/<pid>/limits: the soft and hard limits of a process."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<name>.+?)\s{2,}(?P<soft>\S+)\s+(?P<hard>\S+)(?:\s+(?P<units>\S+))?\s*$")


@dataclass(frozen=True)
class Limit:
    soft: int | None  # None: unlimited
    hard: int | None

    @staticmethod
    def show(value: int | None) -> str:
        return "unlimited" if value is None else str(value)

    def __str__(self) -> str:
        return f"soft {self.show(self.soft)}, hard {self.show(self.hard)}"


def parse_limits(text: str) -> dict[str, Limit]:
    """{'Max core file size': Limit(0, None), ...}; the header line is skipped."""
    out: dict[str, Limit] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m["name"].strip() == "Limit":
            continue
        try:
            out[m["name"].strip()] = Limit(_value(m["soft"]), _value(m["hard"]))
        except ValueError:
            continue
    return out


def _value(word: str) -> int | None:
    return None if word == "unlimited" else int(word)


def core_limit(text: str) -> Limit | None:
    return parse_limits(text).get("Max core file size")
