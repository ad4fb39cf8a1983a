"""Per-program enrichers: application facts a backtrace alone does not give.

An enricher is a small module with ``PROGRAM`` (a name), ``matches(target)``
and ``enrich(target, probe) -> Context | None``. ``target`` says which
program crashed; ``probe`` evaluates gdb expressions on the core. To support
another program, add a module here and list it in ``ENRICHERS``.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from analyzer.model import Context
from analyzer.problems import ENRICHER_FAILED, Problem

ENRICHERS = ("analyzer.enrichers.postgres", "analyzer.enrichers.haproxy", "analyzer.enrichers.redis")


@dataclass(frozen=True)
class Target:
    executable: str | None  # path in the crashed process' file system
    executable_file: Path | None  # where it could be read here
    modules: tuple[str, ...]
    options: dict  # e.g. {"show_literals": False}

    @property
    def name(self) -> str:
        return (self.executable or "").rsplit("/", 1)[-1]


class Probe(Protocol):
    def evaluate(self, expression: str) -> str | None: ...

    def string(self, expression: str) -> str | None: ...

    def read(self, address: int, size: int) -> bytes | None: ...


def search_file(path: Path | None, pattern: bytes) -> tuple[str, ...] | None:
    """Search an executable's bytes (version strings live in .rodata).
    Returns the whole match and its groups, decoded, or None."""
    import mmap

    if path is None:
        return None
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = re.search(pattern, data)
            if found is None:
                return None
            return tuple(g.decode("utf-8", "replace") for g in (found.group(0), *found.groups()) if g is not None)
    except (OSError, ValueError):
        return None


def enrich_all(target: Target, probe: Probe) -> tuple[tuple[Context, ...], tuple[Problem, ...]]:
    """Run every matching enricher; one that fails adds a problem, not a crash."""
    contexts, problems = [], []
    for name in ENRICHERS:
        module = importlib.import_module(name)
        if not module.matches(target):
            continue
        try:
            found = module.enrich(target, probe)
        except Exception as exc:  # an enricher bug must not lose the analysis
            problems.append(Problem(ENRICHER_FAILED, f"{module.PROGRAM} enricher failed: {exc}"))
            continue
        if found is not None:
            contexts.append(found)
    return tuple(contexts), tuple(problems)
