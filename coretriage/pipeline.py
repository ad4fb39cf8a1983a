"""From a finished spool bundle to a stored, grouped crash.

The one place that knows both sides: the collector's bundle format and the
analyzer's ingest. The collector daemon calls ``process_bundle`` directly
(embedded mode) or through the Celery task in ``coretriage.tasks``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def store_meta(meta) -> dict:
    """The crash metadata kept with the crash (shown in the UI)."""
    data = meta.to_dict()
    data["host"] = meta.hostname or None
    data["container"] = data.get("container_name") or (meta.container_id[:12] if meta.container_id else None)
    return data


def adopt_files(config, bundle_dir: Path, files: dict[str, str]) -> None:
    """Put back in ``files/sha256/`` any file of the bundle's manifest that
    is missing there (retention removed it between the handler's look and
    its link): the bundle's own hard link still holds the bytes."""
    sha_dir = config.files_dir / "sha256"
    for path, digest in files.items():
        stored = sha_dir / digest
        linked = Path(bundle_dir) / "root" / path.lstrip("/")
        if ".." in Path(path).parts or stored.exists() or not linked.is_file() or linked.is_symlink():
            continue
        try:
            os.link(linked, stored)
        except FileExistsError:
            pass
        except OSError:
            continue  # the analysis still reads the bundle's own copy


def process_bundle(config, store, bundle_dir: Path, enrich=None):
    """Analyze one bundle and mark it done. ``enrich(container_id)`` may add
    container name, image and labels (the Docker API). Idempotent."""
    from coretriage.ingest import decompressed, ingest, ingest_metadata
    from collector.bundle import Bundle
    from collector.spool import mark_done, read_meta
    from collector.sysroot import read_manifest

    bundle_dir = Path(bundle_dir)
    meta = read_meta(bundle_dir)
    data = store_meta(meta)
    try:
        files = read_manifest(bundle_dir)
    except (OSError, ValueError):
        files = None  # unreadable: the analysis still has root/
    if files:
        # the crash keeps its files by content, once the bundle is pruned too
        data["files"] = files
        adopt_files(config, bundle_dir, files)
    if enrich is not None and meta.container_id:
        data.update({k: v for k, v in (enrich(meta.container_id) or {}).items() if v is not None})
        data["container"] = data.get("container_name") or data["container"]
    bundle = Bundle(bundle_dir)
    sysroot = bundle.root
    core_path = bundle.core
    if meta.core_file and core_path.is_file():
        with decompressed(core_path, config.tmp_dir, meta.core_size or None) as core:
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
    if stored and core_path.is_file():
        core_path.unlink()  # the store holds it now (linked, not copied); root/ stays for reprocess and gdb
    mark_done(bundle_dir)
    return done
