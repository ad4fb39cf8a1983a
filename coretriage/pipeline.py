"""From a finished spool bundle to a stored, grouped crash.

The one place that knows both sides: the collector's bundle format and the
analyzer's ingest. The collector daemon calls ``process_bundle`` directly
(embedded mode) or through the Celery task in ``coretriage.tasks``. A bundle's
full core is analyzed when it has one, else its stack-only core (the same
gdb path); the crash's meta says which (``core_kind``: full, stack, none,
with ``core_size`` and ``core_kind_reason``). A crash
keeps its bundle's ``files.json`` (path -> sha256) in its metadata, so its
files are found by content once the bundle is pruned; ``retention_references``
tells the collector's retention (``collector.pruning``) what stored crashes
still need, and ``retention_loop`` is the daemon's thread that runs it.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
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


def core_kept(meta, bundle) -> tuple[str, Path | None, int]:
    """(kind, compressed core to analyze, its uncompressed size): the full
    core when the bundle still holds it, else its stack-only core
    (``collector.stackcore``; the full one dropped or evicted), else none."""
    if meta.core_file and bundle.core.is_file():
        return "full", bundle.core, meta.core_size
    if meta.stack_core_file and bundle.stack_core.is_file():
        return "stack", bundle.stack_core, meta.stack_core_size or 0
    return "none", None, 0


def kind_reason(kind: str, meta, bundle) -> str | None:
    """Why a crash has no full core, in one line (None when it has)."""
    if kind == "full":
        return None
    why = meta.dropped or ("evicted to make room in the spool" if bundle.was_evicted() else "no core in the bundle")
    if kind == "stack":
        return f"stack-only core (stacks, registers, written data of the mapped files): {why}"
    return why


def process_bundle(config, store, bundle_dir: Path, enrich=None):
    """Analyze one bundle and mark it done. ``enrich(container_id)`` may add
    container name, image and labels (the Docker API).

    Idempotent by bundle: a bundle already done, or whose crash is stored
    (a worker killed between storing and marking it done), gives the stored
    crash back (None for a done bundle stored before crashes recorded their
    bundle) and is not analyzed again; a bundle another process is analyzing
    raises ``coretriage.claims.BundleBusy`` (try later)."""
    from coretriage.claims import bundle_held

    bundle_dir = Path(bundle_dir)
    if (found := _already(store, bundle_dir)) is not False:
        return found
    with bundle_held(store, bundle_dir):
        if (found := _already(store, bundle_dir)) is not False:  # done while we waited for the lock
            return found
        return _process(config, store, bundle_dir, enrich)


def _already(store, bundle_dir: Path):
    """The stored crash of a bundle processed before (None when it is done
    but its crash does not say so), or False when it still has to be."""
    from coretriage.ingest import as_ingested
    from collector.spool import is_done, mark_done

    row = store.crash_of_bundle(bundle_dir.name)
    if row is not None:
        if not is_done(bundle_dir):
            mark_done(bundle_dir)
        return as_ingested(row)
    return None if is_done(bundle_dir) else False


def _process(config, store, bundle_dir: Path, enrich):
    from coretriage.ingest import decompressed, ingest, ingest_metadata
    from collector.bundle import Bundle
    from collector.spool import mark_done, read_meta
    from collector.sysroot import read_manifest

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
    kind, core_path, size = core_kept(meta, bundle)
    data.update(core_kind=kind, core_size=size, core_read=meta.core_size,
                core_kind_reason=kind_reason(kind, meta, bundle))
    if core_path is not None:
        # a stack core is analyzed like a full one: the same gdb path, its missing memory said so
        with decompressed(core_path, config.tmp_dir, size or None) as core:
            done = ingest(config, store, core, sysroot=sysroot if sysroot.is_dir() else None,
                          meta=data, crashed_at=float(meta.crash_time), compressed=core_path,
                          bundle_id=bundle.id)
    else:
        crash_id = "c" + hashlib.sha256(meta.id.encode()).hexdigest()[:12]
        done = ingest_metadata(config, store, crash_id, executable=meta.exe, signal=meta.signal,
                               command_line=" ".join(meta.cmdline) or None, pid=meta.pid,
                               reason=meta.dropped or ("evicted to make room in the spool"
                                                       if bundle.was_evicted()
                                                       else "no core in the bundle"), meta=data,
                               crashed_at=float(meta.crash_time), bundle_id=bundle.id)
    stored = done.crash.core_file and (config.data_dir / done.crash.core_file).is_file()
    if meta.delete_core_after_analysis and core_path is not None:  # set-uid or non-dumpable: analyzed, then gone
        _delete_core(config, store, done.crash, core_path)
    elif stored and core_path is not None and core_path.is_file():
        core_path.unlink()  # the store holds it now (linked, not copied); root/ stays for reprocess and gdb
    if stored or meta.delete_core_after_analysis:
        # the stack core beside an analyzed core is of no more use, and of a
        # set-uid process's must not outlive its full core
        bundle.stack_core.unlink(missing_ok=True)
    mark_done(bundle_dir)
    return done


# ---- retention: what stored crashes still need from the spool and DATA/files ----

def retention_references(config, store):
    """``collector.pruning.References`` from every stored crash that still
    has its core (one whose core was pruned can no longer be analyzed, so
    its files are not needed): its executable, its files by content, and
    its whole bundle when it was stored before bundles listed their files."""
    import json

    import sqlalchemy as sa

    from collector.pruning import SHA256_DIR, References
    from coretriage.store import crashes

    files_dir = str(config.files_dir) + "/"
    spool_dir = str(config.spool_dir) + "/"
    keys: set[str] = set()
    held: set[str] = set()
    c = crashes.c
    query = sa.select(c.exe_file, c.sysroot, c.meta).where(c.core_file.is_not(None))
    with store.engine.connect() as db:
        for exe_file, sysroot, meta_text in db.execute(query):
            if exe_file and exe_file.startswith(files_dir):
                keys.add(exe_file[len(files_dir):])
            try:
                meta = json.loads(meta_text or "{}")
            except ValueError:
                meta = {}
            files = meta.get("files") if isinstance(meta, dict) else None
            if isinstance(files, dict) and files:
                keys.update(f"{SHA256_DIR}/{digest}" for digest in files.values() if isinstance(digest, str))
            elif sysroot and sysroot.startswith(spool_dir):
                held.add(sysroot[len(spool_dir):].split("/", 1)[0])
    return References(files=frozenset(keys), bundles=frozenset(held))


def prune_once(config, store, log=None):
    """One retention pass with the limits of collector.toml's ``[retention]``.
    ``store`` None: a host that uploads keeps no crashes, so nothing stored
    needs its files (the server has them)."""
    from collector.pruning import References, load_limits, prune

    limits = load_limits(config.data_dir)
    done = prune(config.data_dir, retention_references(config, store) if store is not None else References(), limits)
    if log is not None and (done.bundles or done.files or done.over):
        log(f"retention: removed {len(done.bundles)} done bundles and {len(done.files)} captured files "
            f"({done.freed / (1 << 20):.1f} MiB)" + (
                f"; stored crashes still need {done.over / (1 << 20):.1f} MiB more than max_size "
                "(coretriage prune --keep N removes old cores)" if done.over else ""))
    return done, limits


def retention_loop(config, store_of, stop, log) -> None:
    """The retention thread of the collector daemon, ``coretriage run`` and
    the central server: a pass every ``interval``; a pass that fails (a
    store that cannot be read) removes nothing and is logged. Processes
    sharing a data dir (gunicorn's workers) take turns: a pass runs only in
    the one holding ``DATA/retention.lock``, and only when the last pass,
    whichever process made it (its time is in that file), is ``interval``
    old: one scan of every stored crash per interval, not one per worker."""
    import fcntl

    from collector.pruning import RetentionLimits, load_limits

    while not stop.is_set():
        interval = RetentionLimits().interval
        try:
            interval = load_limits(config.data_dir).interval
            fd = os.open(config.data_dir / "retention.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last, now = _last_pass(fd), time.time()
                # a time more than an interval ahead is a clock set back, not a pass
                if abs(now - last) >= interval:
                    prune_once(config, store_of(), log)
                    os.pwrite(fd, f"{time.time():.6f}\n".encode(), 0)
            except BlockingIOError:
                pass  # another process sharing the data dir is at it
            finally:
                os.close(fd)
        except Exception as exc:  # never let retention stop the collector
            log(f"retention skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        stop.wait(interval)


def _last_pass(fd: int) -> float:
    """When the last retention pass ended (0: never), from the lock file."""
    try:
        last = float(os.pread(fd, 64, 0).split()[0])
    except (ValueError, IndexError):
        return 0.0
    return last if math.isfinite(last) else 0.0


def _delete_core(config, store, crash, bundle_core: Path) -> None:
    """The core of a crash whose meta says ``delete_core_after_analysis``:
    out of the store and the bundle; the analysis stays, and the crash's meta
    says why it has no core."""
    if crash.core_file:
        (config.data_dir / crash.core_file).unlink(missing_ok=True)
        store.forget_core(crash.id)
    bundle_core.unlink(missing_ok=True)
