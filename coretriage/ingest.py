"""Analyze a core, keep it (compressed) and file it in its group.

This is the service the CLI, the collector and the Celery task all call; it
is idempotent: the crash id is derived from the core's bytes, so the same
core ingested twice (a redelivered queue message) is stored once. The
command line and the collector metadata are masked (``coretriage.masking``)
before anything is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from analyzer.confined import analyze_core
from analyzer.sandbox import Sandbox
from analyzer.model import Analysis, Signature
from analyzer.signature import generate, load_rules
from analyzer.errors import CoretriageError
from analyzer.secrets import mask_text
from coretriage.masking import mask_analysis, mask_meta, secret_names
from coretriage.datadir import private_dirs
from coretriage.records import Analyzed, CrashRecord, CrashRow, NotFound

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported by whoever opens it
    from coretriage.store import Store

CHUNK = 1 << 20


class IngestError(CoretriageError):
    """Bad input: a core, executable or sysroot that is not there or not readable."""


@dataclass(frozen=True)
class Ingested:
    crash: CrashRow
    new: bool
    analysis: Analysis
    signature: Signature


def crash_id_of(core: Path) -> str:
    digest = hashlib.sha256()
    with open(core, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return "c" + digest.hexdigest()[:12]


def compress_into(source: Path, dest: Path) -> None:
    """zstd-compress ``source`` to ``dest`` atomically (temp name, fsync, rename)."""
    import zstandard

    private_dirs(dest.parent)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(src, out, read_size=CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)  # cores hold memory: passwords, keys, requests
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NoSpaceError(CoretriageError):
    """Not enough free space to decompress a core for its analysis."""


TMP_MARGIN = 256 << 20  # left free on tmp/'s filesystem after a core is decompressed
_CHECK_EVERY = 64 << 20


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def uncompressed_size(core_zst: Path) -> int | None:
    """The size a zstd frame header records, when the compressor knew it."""
    import zstandard

    with open(core_zst, "rb") as f:
        head = f.read(18)
    try:
        size = zstandard.frame_content_size(head)
    except zstandard.ZstdError:
        return None
    return size if size >= 0 else None


def check_room(tmp_dir: Path, core_zst: Path, need: int, margin: int = TMP_MARGIN) -> None:
    """Raise NoSpaceError unless ``tmp_dir`` can take ``need`` bytes and keep ``margin`` free."""
    free = shutil.disk_usage(tmp_dir).free
    if need + margin > free:
        raise NoSpaceError(f"not enough space in {tmp_dir} to decompress {core_zst}: it needs {_mib(need)} "
                           f"and {_mib(margin)} kept free, {_mib(free)} are free; it is tried again later")


@contextlib.contextmanager
def decompressed(core_zst: Path, tmp_dir: Path, size: int | None = None):
    """Yield a temporary uncompressed copy of a stored core. ``size``: its
    uncompressed size when known (the bundle's ``core_size``); free space is
    checked against twice it (the analysis sandbox copies the core once
    more), or the zstd frame's own, before anything is written, and against
    the margin as it is written when neither says."""
    import zstandard

    private_dirs(tmp_dir)
    need = size if size else uncompressed_size(core_zst)
    check_room(tmp_dir, core_zst, 2 * need if need else 0)  # this copy, and the analysis sandbox's
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="core-") as d:
        out_path = Path(d) / "core"
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(core_zst, "rb") as src, os.fdopen(out_fd, "wb") as out:
            reader = zstandard.ZstdDecompressor().stream_reader(src, read_size=CHUNK)
            since_check = 0
            while chunk := reader.read(CHUNK):
                out.write(chunk)
                since_check += len(chunk)
                if since_check >= _CHECK_EVERY and need is None:
                    since_check = 0
                    out.flush()
                    check_room(tmp_dir, core_zst, 0)
        yield out_path


def _is_the_build(path: Path, build_id: str | None) -> bool:
    """Whether ``path``, where the analysis (a sandbox, whose answer is only
    data) says it found the program, is a regular ELF file of the build that
    crashed: never a FIFO, a device or a secret that is not a binary."""
    from analyzer import elfid

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.pread(fd, 4, 0) != b"\x7fELF":
            return False
        return build_id is None or elfid.build_id(elfid.fd_reader(fd)) == build_id
    except OSError:
        return False
    finally:
        os.close(fd)


def keep_file(files_dir: Path, path: Path) -> Path:
    """Store a file once per content, as ``files/sha256/<hex>`` (the layout
    collector.sysroot writes): a build-id says nothing about the bytes."""
    sha_dir = files_dir / "sha256"
    private_dirs(sha_dir)
    with open(path, "rb") as f:
        dest = sha_dir / hashlib.file_digest(f, "sha256").hexdigest()
    if dest.exists():
        return dest
    fd, tmp = tempfile.mkstemp(dir=sha_dir, prefix=".tmp-")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            while chunk := src.read(CHUNK):  # hashed as copied: the name is the bytes stored
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        dest = sha_dir / digest.hexdigest()
        with contextlib.suppress(FileExistsError):
            os.link(tmp, dest)
    finally:
        os.unlink(tmp)
    return dest


@contextlib.contextmanager
def crash_sysroot(config, sysroot: str | None, files: dict | None):
    """The sysroot a stored crash is analyzed with: its bundle's ``root/``
    while the bundle is there, else a temporary tree of hard links to the
    very files its process mapped (``files``: path -> sha256, from its
    bundle's ``files.json``), else None. Hard links, not symlinks: the
    analysis sandbox copies the tree in, and a link into the data dir it
    hides would dangle there."""
    if sysroot and Path(sysroot).is_dir():
        yield Path(sysroot)
        return
    if not isinstance(files, dict) or not files:
        yield None
        return
    config.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.tmp_dir, prefix="sysroot-") as d:
        root = Path(d)
        for path, digest in files.items():
            stored = config.files_dir / "sha256" / str(digest)
            parts = Path(str(path)).parts
            if (not str(path).startswith("/") or ".." in parts or len(str(digest)) != 64
                    or "/" in str(digest) or not stored.is_file()):
                continue
            link = root / str(path).lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                try:
                    os.link(stored, link)
                except OSError:  # another file system: a copy
                    shutil.copyfile(stored, link)
        yield root


def _found_in_store(config, analysis: Analysis, tmp_root: Path | None, files: dict) -> Analysis:
    """Modules found in a temporary sysroot are recorded at their stored path."""
    if tmp_root is None:
        return analysis
    prefix = str(tmp_root) + "/"

    def stored(found_at: str) -> str:
        digest = files.get("/" + found_at[len(prefix):])
        return str(config.files_dir / "sha256" / digest) if isinstance(digest, str) else found_at

    modules = tuple(dataclasses.replace(m, found_at=stored(m.found_at))
                    if m.found_at and m.found_at.startswith(prefix) else m for m in analysis.modules)
    return dataclasses.replace(analysis, modules=modules)


def _tuples(data: dict) -> dict:
    """JSON lists back into the tuples a frozen Signature holds."""
    return {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
            for k, v in data.items()}


def group_fields(analysis: Analysis, signature: Signature) -> dict:
    """What the group list shows and searches, from the latest crash."""
    thread = analysis.mixed().crashing_thread  # key frames index the mixed stack
    frames = thread.frames if thread else ()
    by_index = {f.index: f for f in frames}
    key = [by_index[i] for i in signature.key_frames if i in by_index]
    key_frame = None
    if key:
        f = key[0]
        key_frame = f.function or (f"{f.module_name}+{f.offset:#x}" if f.module else None)
    names = [f.function for f in frames[:64] if f.function]
    text = " ".join([signature.text, analysis.executable or "", *names])
    return {"key_frame": key_frame, "search_text": text}


def analyzed(analysis: Analysis, signature: Signature, quality: float | None = None) -> Analyzed:
    """The part of a crash's record that analysis and the rules make."""
    return Analyzed(signature=signature.text, signature_data=dataclasses.asdict(signature),
                    analysis=analysis.to_dict(), executable=analysis.executable,
                    signal=analysis.signal.name if analysis.signal else None,
                    quality=signature.quality if quality is None else quality,
                    rules_version=signature.rules_version or None, **group_fields(analysis, signature))


def _rules(config):
    return load_rules(config.rules_dir if config.rules_dir.is_dir() else None)


def _signature(config, analysis: Analysis) -> Signature:
    return generate(analysis, _rules(config))


def _prepare_filing(config) -> None:
    """What filing a crash needs whatever its analysis: the signature rules
    (compiled once, then cached) and the compressor, loaded while gdb works.
    A failure is left for the ingest itself to meet and report."""
    try:
        _rules(config)
        import zstandard  # noqa: F401
    except Exception:  # noqa: BLE001,S110 - raised again where it is used
        pass


def sandbox_policy(config):
    """Analysis sandboxes: the data dir hidden, scratch in its tmp/ (cores are big)."""
    from analyzer.sandbox import SandboxPolicy

    return SandboxPolicy.default(config.data_dir, config.tmp_dir, config.gdb_memory)


def _analyze(config, core: Path, exe: Path | None, sysroot: Path | None, gdb: Sandbox | None = None,
             symbols=None) -> Analysis:
    """``symbols``: a ``coretriage.debuginfod.SymbolSource`` (the store and
    debuginfod); one for the data dir's settings when None."""
    from coretriage.debuginfod import source_for

    options = {"show_literals": config.show_literals, "secret_names": secret_names(config.data_dir),
               "python_locals": config.python_locals}
    symbols = symbols if symbols is not None else source_for(config, None)
    return analyze_core(core, exe, sysroot, config.gdb_budget(), options, gdb, sandbox_policy(config),
                        symbols=symbols)


def named_sender(analysis: Analysis, meta: dict | None) -> Analysis:
    """The signal's sender named as the collector found it running
    (``collector.sender``; the core has its pid and uid, not its name), on
    the signal whose sender it is."""
    found = (meta or {}).get("signal_sender")
    if not isinstance(found, dict) or not isinstance(found.get("comm"), str) or analysis.signal is None:
        return analysis

    def named(sig):
        if sig.sender_pid == found.get("pid") and sig.sender_uid == found.get("uid") and not sig.sender_is_self:
            return dataclasses.replace(sig, sender_comm=found["comm"][:64])
        return dataclasses.replace(sig, reraised=named(sig.reraised)) if sig.reraised else sig

    return dataclasses.replace(analysis, signal=named(analysis.signal))


def keep_core(core: Path, dest: Path, compressed: Path | None) -> None:
    """Store the core compressed. An already compressed copy on the same
    filesystem (a spool bundle's core.zst) is hard-linked, not compressed again."""
    if compressed is not None:
        private_dirs(dest.parent)
        try:
            os.link(compressed, dest)
            return
        except FileExistsError:
            return
        except OSError:
            pass  # another filesystem: compress it here
    compress_into(core, dest)


def _stored(store: Store, crash_id: str) -> Ingested | None:
    try:
        row = store.crash(crash_id)
    except NotFound:
        return None
    return as_ingested(row)


def as_ingested(row: CrashRow) -> Ingested:
    """A crash already stored, as ingest would have returned it (not new)."""
    return Ingested(row, False, Analysis.from_dict(row.analysis), Signature(**_tuples(row.signature)))


def analysis_failure(analysis: Analysis) -> str | None:
    """Why an analysis gave no backtrace, as its first problem's code (a
    bounded set: /metrics labels failures with it); None when it gave one."""
    thread = analysis.crashing_thread
    if thread is not None and thread.frames:
        return None
    return analysis.problems[0].code if analysis.problems else "no_frames"


def ingest(config, store: Store | Callable[[], Store], core: Path, exe: Path | None = None,
           sysroot: Path | None = None, meta: dict | None = None, crashed_at: float | None = None,
           compressed: Path | None = None, gdb: Sandbox | None = None, bundle_id: str | None = None
           ) -> Ingested:
    """Analyze ``core`` and file it. ``store`` may be a function that returns
    the store: a cold CLI opens it (importing SQLAlchemy is most of its
    start-up) while gdb runs, and so looks for the same core already stored
    after the analysis rather than before it. ``gdb``: the analysis sandbox
    (``analyzer.sandbox.analysis_sandbox``) started early, for the analysis
    to use (the caller closes it). ``bundle_id``: the spool bundle the core
    came from; a bundle is stored once (``Store.add_crash``)."""
    core = Path(core)
    if not core.is_file():
        raise IngestError(f"{core}: no such file")
    if exe is not None and not Path(exe).is_file():
        raise IngestError(f"{exe}: executable not found")
    if sysroot is not None and not Path(sysroot).is_dir():
        raise IngestError(f"{sysroot}: sysroot is not a directory")
    try:
        crash_id = crash_id_of(core)
    except OSError as exc:
        raise IngestError(f"{core}: {exc.strerror}") from None
    if not callable(store) and (done := _stored(store, crash_id)):
        return done  # already stored: ingesting is idempotent

    from coretriage.debuginfod import source_for

    symbols = source_for(config, (meta or {}).get("os_release"))
    preparing = None
    if gdb is not None:  # its sandbox is forked already: no fork follows that a thread could upset
        preparing = threading.Thread(target=_prepare_filing, args=(config,), name="prepare-filing", daemon=True)
        preparing.start()
    started = time.monotonic()
    analysis = named_sender(_analyze(config, core, exe, sysroot, gdb, symbols=symbols), meta)
    seconds = time.monotonic() - started  # kept with the crash: /metrics runs in another process
    if preparing is not None:
        preparing.join()
    if compressed is not None:  # ``core`` is a temporary copy: the record names where it came from
        analysis = dataclasses.replace(analysis, core=str(compressed))
    signature = _signature(config, analysis)
    if callable(store):
        store = store()
        if done := _stored(store, crash_id):
            return done
    core_file = f"cores/{crash_id}.core.zst"
    keep_core(core, config.data_dir / core_file, compressed)
    exe_file = None
    exe_found = next((m for m in analysis.modules if m.path == analysis.executable and m.found_at), None)
    meta = mask_meta(meta, secret_names(config.data_dir))  # also what an older collector left unmasked
    if exe_found is not None:
        listed = (meta.get("files") or {}).get(exe_found.path)  # its bundle hashed it already
        stored = config.files_dir / "sha256" / listed if isinstance(listed, str) and len(listed) == 64 else None
        if stored is not None and stored.is_file():
            exe_file = str(stored)
        elif _is_the_build(Path(exe_found.found_at), exe_found.build_id):
            exe_file = str(keep_file(config.files_dir, Path(exe_found.found_at)))
    when = crashed_at or meta.get("crashed_at") or core.stat().st_mtime
    row, new = store.add_crash(CrashRecord(
        id=crash_id, crashed_at=float(when), analyzed=analyzed(analysis, signature),
        core_file=core_file, exe_file=exe_file, sysroot=str(sysroot) if sysroot else None,
        host=meta.get("host"), container=meta.get("container"), image=meta.get("image"), meta=meta,
        analysis_seconds=seconds, bundle_id=bundle_id, failure=analysis_failure(analysis)))
    if new:  # symbols that arrived with this crash name its build's other crashes too
        from coretriage.resymbol import after_ingest

        after_ingest(config, store, row, analysis, symbols.arrived)
    return Ingested(row, new, analysis, signature)


def ingest_metadata(config, store: Store, crash_id: str, *, executable: str | None, signal: int | None,
                    command_line: str | None, pid: int | None, reason: str, meta: dict,
                    crashed_at: float, bundle_id: str | None = None) -> Ingested:
    """Record a crash whose core was not kept (size limit, crash storm, a
    policy of no cores): it still counts, in a group by program and signal."""
    from analyzer.model import SignalInfo
    from analyzer.problems import CORE_NOT_KEPT, Problem
    from analyzer.signals import signal_name

    names = secret_names(config.data_dir)
    meta = mask_meta(meta, names)
    analysis = Analysis(core="", executable=executable, pid=pid,
                        command_line=mask_text(command_line, names) if command_line else command_line,
                        signal=SignalInfo(signal, signal_name(signal)) if signal else None,
                        problems=(Problem(CORE_NOT_KEPT, f"core not kept: {reason}"),))
    signature = _signature(config, analysis)
    row, new = store.add_crash(CrashRecord(
        id=crash_id, crashed_at=crashed_at, analyzed=analyzed(analysis, signature, quality=0.0),
        host=meta.get("host"), container=meta.get("container"), image=meta.get("image"), meta=meta,
        bundle_id=bundle_id))
    return Ingested(row, new, analysis, signature)


def reanalyze(config, row) -> Analysis | None:
    """A stored crash analyzed again from its stored core (None without one)."""
    from coretriage.debuginfod import source_for

    if not row.core_file or not (config.data_dir / row.core_file).is_file():
        return None
    exe = Path(row.exe_file) if row.exe_file and Path(row.exe_file).is_file() else None
    size = row.meta.get("core_size") if isinstance(row.meta.get("core_size"), int) else None
    with crash_sysroot(config, row.sysroot, row.meta.get("files")) as sysroot, \
            decompressed(config.data_dir / row.core_file, config.tmp_dir, size) as core:
        analysis = named_sender(_analyze(config, core, exe, sysroot, None,
                                         source_for(config, row.meta.get("os_release"))), row.meta)
        if sysroot is not None and str(sysroot) != row.sysroot:
            analysis = _found_in_store(config, analysis, sysroot, row.meta.get("files") or {})
    return dataclasses.replace(analysis, core=row.analysis.get("core", analysis.core))


def reprocess(config, store: Store, progress=lambda crash_id, sig: None) -> dict[str, int]:
    """Analyze every stored core again and regroup. A group whose crashes all
    get the same new signature keeps its id. A group made here raises
    ``new`` only when none of its crashes was alerted under its old group
    (``coretriage.alerts.new_after_reprocess``)."""
    from coretriage.alerts import new_after_reprocess

    results: dict[str, tuple[int, Analysis, Signature]] = {}
    listed = store.crash_ids()
    before = {group_id for _, group_id in listed}
    for crash_id, group_id in listed:
        row = store.crash(crash_id)
        analysis = reanalyze(config, row)
        if analysis is None:  # core gone (metadata-only crash): regroup what we have, masked as it is now
            analysis = Analysis.from_dict(mask_analysis(row.analysis, secret_names(config.data_dir)))
        signature = _signature(config, analysis)
        results[crash_id] = (group_id, analysis, signature)
        progress(crash_id, signature.text)

    by_group: dict[int, set[str]] = {}
    for group_id, _, signature in results.values():
        by_group.setdefault(group_id, set()).add(signature.text)
    for group_id, sigs in sorted(by_group.items()):
        if len(sigs) == 1:
            store.rename_group(group_id, next(iter(sigs)))
    alerted = store.alerted_groups(before)  # before any crash moves and emptied groups go
    moved = 0
    moves: dict[str, tuple[int, int]] = {}
    for crash_id, (group_id, analysis, signature) in results.items():
        store.update_analysis(crash_id, analyzed(analysis, signature))
        moves[crash_id] = (group_id, store.crash(crash_id).group_id)
        if moves[crash_id][1] != group_id:
            moved += 1
    store.recount()
    raised = sum(store.raise_new(gid, crash_id) for gid, crash_id in new_after_reprocess(moves, before, alerted).items())
    return {"crashes": len(results), "moved": moved, "alerts": raised}
