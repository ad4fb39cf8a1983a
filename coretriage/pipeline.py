"""From a finished spool bundle to a stored, grouped crash.

The one place that knows both sides: the collector's bundle format and the
analyzer's ingest. The collector daemon calls ``process_bundle`` directly
(embedded mode) or through the Celery task in ``coretriage.tasks``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def store_meta(meta) -> dict:
    """The crash metadata kept with the crash (shown in the UI)."""
    data = meta.to_dict()
    data["host"] = meta.hostname or None
    data["container"] = data.get("container_name") or (meta.container_id[:12] if meta.container_id else None)
    return data


def process_bundle(config, store, bundle_dir: Path, enrich=None):
    """Analyze one bundle and mark it done. ``enrich(container_id)`` may add
    container name, image and labels (the Docker API). Idempotent."""
    from coretriage.ingest import decompressed, ingest, ingest_metadata
    from collector.bundle import Bundle
    from collector.spool import mark_done, read_meta

    bundle_dir = Path(bundle_dir)
    meta = read_meta(bundle_dir)
    data = store_meta(meta)
    if enrich is not None and meta.container_id:
        data.update({k: v for k, v in (enrich(meta.container_id) or {}).items() if v is not None})
        data["container"] = data.get("container_name") or data["container"]
    bundle = Bundle(bundle_dir)
    sysroot = bundle.root
    core_path = bundle.core
    if meta.core_file and core_path.is_file():
        with decompressed(core_path, config.tmp_dir) as core:
            done = ingest(config, store, core, sysroot=sysroot if sysroot.is_dir() else None,
                          meta=data, crashed_at=float(meta.crash_time), compressed=core_path)
    else:
        crash_id = "c" + hashlib.sha256(meta.id.encode()).hexdigest()[:12]
        done = ingest_metadata(config, store, crash_id, executable=meta.exe, signal=meta.signal,
                               command_line=" ".join(meta.cmdline) or None, pid=meta.pid,
                               reason=meta.dropped or ("evicted to make room in the spool"
                                                       if bundle.was_evicted()
                                                       else "no core in the bundle"), meta=data,
                               crashed_at=float(meta.crash_time))
    stored = done.crash.core_file and (config.data_dir / done.crash.core_file).is_file()
    if meta.delete_core_after_analysis:  # a set-uid or non-dumpable process: analyzed, then gone
        _delete_core(config, store, done.crash, core_path)
    elif stored and core_path.is_file():
        core_path.unlink()  # the store holds it now (linked, not copied); root/ stays for reprocess and gdb
    mark_done(bundle_dir)
    return done


def _delete_core(config, store, crash, bundle_core: Path) -> None:
    """The core of a crash whose meta says ``delete_core_after_analysis``:
    out of the store and the bundle; the analysis stays, and the crash's meta
    says why it has no core."""
    if crash.core_file:
        (config.data_dir / crash.core_file).unlink(missing_ok=True)
        store.forget_core(crash.id)
    bundle_core.unlink(missing_ok=True)
