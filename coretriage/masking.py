"""Secrets masked in what the application stores and shows.

The rules are ``analyzer.secrets``; this module knows where a crash keeps
what a process said about itself: the analysis's ``command_line`` (the core's
psargs note) and the collector metadata's ``cmdline``, ``environ``,
``problems`` and Docker ``labels``, and the analysis's Python locals (only
admins are shown those at all: ``without_locals``). Ingest masks before
storing; reports, the API and the crash page mask again as they read a row,
so a row an older version stored unmasked does not leak either (masking is
idempotent).

The secret names are ``secret_names`` from ``collector.toml`` in the data
dir, the handler's own list, or the defaults when it is absent or unreadable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from analyzer.secrets import DEFAULT_SECRET_NAMES, mask_argv, mask_environ, mask_psargs, mask_text
from coretriage.records import CrashRow


def secret_names(data_dir: Path | str | None) -> tuple[str, ...]:
    """The patterns the collector masks with on this host."""
    if data_dir is None or not (Path(data_dir) / "collector.toml").exists():
        return DEFAULT_SECRET_NAMES  # the common case, without importing the collector's policy
    from collector.policy import PolicyError, load_policy

    try:
        return load_policy(data_dir).secret_names
    except PolicyError:  # the handler falls back to the defaults too
        return DEFAULT_SECRET_NAMES


def mask_meta(meta: dict | None, names: Iterable[str] = DEFAULT_SECRET_NAMES) -> dict:
    """The collector metadata kept with a crash, masked."""
    names = tuple(names)
    out = dict(meta or {})
    if isinstance(out.get("cmdline"), (list, tuple)):
        out["cmdline"] = mask_argv([str(a) for a in out["cmdline"]], names)
    for key in ("environ", "labels"):
        if isinstance(out.get(key), dict):
            out[key] = mask_environ({str(k): str(v) for k, v in out[key].items()}, names)
    if isinstance(out.get("problems"), (list, tuple)):
        out["problems"] = [mask_text(str(p), names) for p in out["problems"]]
    return out


def mask_analysis(analysis: dict, names: Iterable[str] = DEFAULT_SECRET_NAMES) -> dict:
    """An ``Analysis.to_dict()``, its command line, exception message and
    Python locals masked."""
    names = tuple(names)
    out = dict(analysis)
    if out.get("command_line"):
        out["command_line"] = mask_psargs(str(out["command_line"]), names)
    exception = out.get("exception")
    if isinstance(exception, dict) and exception.get("what"):
        out["exception"] = {**exception, "what": mask_text(str(exception["what"]), names)}
    if _python_locals(out):
        out["python"] = _map_locals(out["python"], lambda pairs: list(mask_environ(
            {str(p[0]): str(p[1]) for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2}, names).items()))
    return out


def _python_locals(analysis: dict) -> bool:
    """Whether any Python frame of the analysis has locals."""
    python = analysis.get("python")
    if not isinstance(python, dict) or not isinstance(python.get("threads"), list):
        return False
    return any(isinstance(f, dict) and f.get("locals")
               for t in python["threads"] if isinstance(t, dict) and isinstance(t.get("frames"), list)
               for f in t["frames"])


def _map_locals(python: dict, change) -> dict:
    """The analysis' ``python`` with every frame's locals through ``change``."""
    threads = []
    for t in python["threads"]:
        if isinstance(t, dict) and isinstance(t.get("frames"), list):
            t = {**t, "frames": [{**f, "locals": change(f["locals"])} if isinstance(f, dict) and f.get("locals")
                                 else f for f in t["frames"]]}
        threads.append(t)
    return {**python, "threads": threads}


def without_locals(analysis: dict) -> dict:
    """An ``Analysis.to_dict()`` without its Python locals: what everyone
    but an admin is shown."""
    if not _python_locals(analysis):
        return analysis
    return {**analysis, "python": _map_locals(analysis["python"], lambda _: [])}


def masked_row(row: CrashRow, names: Iterable[str] = DEFAULT_SECRET_NAMES) -> CrashRow:
    """A stored crash as it may be shown."""
    names = tuple(names)
    return dataclasses.replace(row, analysis=mask_analysis(row.analysis or {}, names),
                               meta=mask_meta(row.meta, names))
