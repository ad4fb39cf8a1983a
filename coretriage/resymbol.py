"""When symbols arrive, the crashes that lacked them are analyzed again.

Symbols for a build-id arrive by ``coretriage symbols add``, by a debuginfod
fetch that succeeds for a later crash of the same build, or with a newly
captured unstripped build of it. The stored crashes whose analysis names
that build-id without debug info are analyzed again, with no ``reprocess``:

- a group whose crashes all get one new signature keeps its id and gains
  the name; it remembers the old one (``renamed_from``, ``renamed_at``:
  the group page says "symbols arrived on DATE: renamed from ...");
- groups that become the same signature merge into the oldest of them
  (the lowest id), which keeps its state and note;
- a group whose crashes get different signatures splits as ``reprocess``
  would split it: the crashes move, the group keeps its id.

``after_ingest`` runs after a crash is stored (in the collector, the worker
or ``coretriage ingest``); ``symbols_arrived`` is the re-analysis itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from analyzer.model import Analysis, Signature


def lacking(analysis: dict, build_ids: set[str]) -> bool:
    """Whether a stored analysis has a module of one of ``build_ids`` without debug info."""
    for m in analysis.get("modules") or ():
        if isinstance(m, dict) and m.get("build_id") in build_ids and m.get("symbols") != "debug":
            return True
    return False


def candidates(store, build_ids: set[str], exclude: set[str] = frozenset()) -> list[tuple[str, int]]:
    """(crash id, group id) of stored crashes that lack the symbols of ``build_ids``."""
    seen: dict[str, int] = {}
    for build_id in sorted(build_ids):
        for crash_id, group_id in store.crashes_mentioning(json.dumps(build_id)):
            if crash_id in exclude or crash_id in seen:
                continue
            if lacking(store.crash(crash_id).analysis, build_ids):
                seen[crash_id] = group_id
    return list(seen.items())


def symbols_arrived(config, store, build_ids, exclude=(), log=lambda line: None) -> dict[str, int]:
    """Analyze again the crashes lacking the symbols of ``build_ids``; regroup
    as the module docstring says. Returns counts: crashes, renamed, merged."""
    from coretriage.ingest import _signature, analyzed, reanalyze

    found = candidates(store, set(build_ids), set(exclude))
    results: dict[str, tuple[int, Analysis, Signature]] = {}
    for crash_id, group_id in found:
        row = store.crash(crash_id)
        analysis = reanalyze(config, row)
        if analysis is None:
            continue
        results[crash_id] = (group_id, analysis, _signature(config, analysis))
    now = time.time()
    renamed = 0
    groups_before = {g.id for g in store.groups(limit=1 << 30)}
    by_group: dict[int, set[str]] = {}
    for group_id, _, signature in results.values():
        by_group.setdefault(group_id, set()).add(signature.text)
    for group_id, sigs in sorted(by_group.items()):  # oldest first: it keeps its id when groups meet
        whole = {c["id"] for c in store.crash_summaries(group_id, limit=1 << 30)} <= set(results)
        old = store.group(group_id).signature
        if len(sigs) != 1 or not whole or old in sigs:
            continue
        new = next(iter(sigs))
        holder = _group_with(store, new)
        if holder is not None and holder < group_id:
            continue  # an older group already has that name: the crashes move to it below
        store.take_signature(group_id, new)
        store.note_renamed(group_id, old, now)
        renamed += 1
        log(f"g{group_id}: symbols arrived: renamed from {old} to {new}")
    for crash_id, (group_id, analysis, signature) in results.items():
        store.update_analysis(crash_id, analyzed(analysis, signature))
    store.recount()
    merged = len(groups_before - {g.id for g in store.groups(limit=1 << 30)})
    return {"crashes": len(results), "renamed": renamed, "merged": merged}


def _group_with(store, signature: str) -> int | None:
    import sqlalchemy as sa

    from coretriage.store import groups

    with store.engine.connect() as db:
        return db.execute(sa.select(groups.c.id).where(groups.c.signature == signature)).scalar()


# unstripped builds this process looked for stripped crashes of, and when:
# a storm of one -g build's crashes searches the store once a minute, not per crash
_CHECKED: dict[tuple[str, str], float] = {}  # (database, build-id) -> when
_CHECKED_MAX = 4096
_CHECK_EVERY = 60.0


def after_ingest(config, store, row, analysis: Analysis, fetched: list[str]) -> dict[str, int] | None:
    """After a new crash is stored: the build-ids it brought symbols for
    (fetched from debuginfod while it was analyzed, or its own unstripped
    files) re-analyze the other crashes of those builds that lacked them.
    Never fails the ingest: a failure is one line on stderr."""
    import sys

    from coretriage.symbols import store_of

    try:
        arrived = set(fetched)
        unstripped = {m.build_id: m for m in analysis.modules
                      if m.build_id and m.symbols == "debug" and m.found_at}
        if unstripped:
            symbols = store_of(config)
            for build_id, module in unstripped.items():
                now = time.monotonic()
                key = (config.database_url, build_id)
                if build_id in arrived or now - _CHECKED.get(key, -_CHECK_EVERY) < _CHECK_EVERY \
                        or symbols.lookup(build_id) is not None:
                    continue
                if len(_CHECKED) >= _CHECKED_MAX:
                    _CHECKED.clear()
                _CHECKED[key] = now
                if not candidates(store, {build_id}, {row.id}):
                    continue  # no other crash needs it: nothing is copied
                try:
                    symbols.add_path(Path(module.found_at), "capture", Path(module.path).name)
                    arrived.add(build_id)
                except Exception as exc:  # noqa: BLE001 - a file gone since: the symbols stay missing
                    print(f"coretriage: symbols of {module.path} not kept: {exc}", file=sys.stderr)
        if not arrived:
            return None
        return symbols_arrived(config, store, arrived, exclude={row.id})
    except Exception as exc:  # noqa: BLE001 - the crash is stored; its siblings wait for reprocess
        print(f"coretriage: re-analysis after new symbols failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
