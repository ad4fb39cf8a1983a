"""The collector daemon: hand every finished bundle to the analysis, once.

Watches the spool (the pipe handler's bundles) and any dump directories
(hosts that keep a file core_pattern, containers writing cores to a mounted
volume) with watchdog, and rescans both on start and every ``rescan``
seconds, so nothing that arrived while it was down, or whose hand-off
failed (a dead broker), is lost. ``submit(bundle_dir)`` is given by the
caller: the analysis in-process, or a Celery task; the collector never
imports the analyzer.

A hand-off that cannot reach the analysis at all (``submit`` raises
``HandoffError``: the broker or the server is down) says nothing about the
bundle: the whole queue waits, with a growing delay (``BACKOFF_FIRST``
doubling up to ``backoff_max``), logged once when the outage starts and
once when it ends, and the bundle that failed goes first afterwards. The
daemon keeps scanning meanwhile. Any other failure is the bundle's own: it
is logged, and the next scan offers the bundle again. A bundle handed over
but not done after ``retry_after`` (a message lost with its broker) is
handed over again; the analysis is idempotent by bundle, so a re-submit
never records twice.

A dump directory may be writable by the users whose programs crash there,
so its listing only chooses names: each core is opened once, relative to
the directory's fd, and read only if it is a regular file with one link
(``collector.dumpdir``); a FIFO, device, symlink or hard link swapped in is
refused with one log line and never blocks the collector.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from analyzer.errors import CoretriageError
from collector import spool
from collector.bundle import Bundle, BundleMeta, bundle_id
from collector.dumpdir import DumpRefused, Identity, open_dump, unlink_if_same
from collector.pathtrust import untrusted_path

log = logging.getLogger("coretriage.collector")
CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
BACKOFF_FIRST = 1.0  # seconds the queue waits after the first failed hand-off of an outage


class HandoffError(CoretriageError):
    """The analysis could not be reached (broker or server down): nothing is
    wrong with the bundle, and the collector backs off its whole queue."""


def writers_of(path: Path, proc: Path = Path("/proc")) -> bool:
    """Whether any process has ``path`` open (a core still being written)."""
    target = str(path)
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        return True
                except OSError:
                    continue
        except OSError:
            continue
    return False


def import_dump(core: Path, spool_dir: Path) -> Path:
    """Turn a finished core file from a dump directory into a spool bundle
    (compressed core, then meta.json last) and remove the original. The
    file is opened once, safely (``collector.dumpdir``); raises DumpRefused."""
    dir_fd = os.open(core.parent, _DIR)
    try:
        fd, st = open_dump(dir_fd, core.name)
        return take_dump(dir_fd, core.name, fd, st, spool_dir, where=core.parent)
    finally:
        os.close(dir_fd)


def take_dump(dir_fd: int, name: str, fd: int, st: os.stat_result, spool_dir: Path, where: Path) -> Path:
    """The bundle of an opened dump file (``fd`` is consumed); the name is
    removed afterwards only if it still names the inode that was read."""
    import zstandard

    with os.fdopen(fd, "rb") as src:
        spool_fd = spool.open_spool(spool_dir)
        try:
            bid = bundle_id(int(st.st_mtime), 0, secrets.token_hex(4))
            bundle_fd = spool.create_bundle(spool_fd, bid)
            try:
                out_fd = spool.create_file(bundle_fd, Bundle.CORE)
                with os.fdopen(out_fd, "wb") as out:
                    zstandard.ZstdCompressor(level=3).copy_stream(src, out, read_size=CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                meta = BundleMeta(id=bid, pid=0, signal=0, crash_time=int(st.st_mtime), host_time=time.time(),
                                  hostname=socket.gethostname(), core_file=Bundle.CORE, core_size=st.st_size,
                                  problems=(f"taken from dump directory {where} as {name!r} (owner uid "
                                            f"{st.st_uid}): pid and signal come from the core's notes",))
                spool.write_meta(bundle_fd, meta)
            finally:
                os.close(bundle_fd)
        finally:
            os.close(spool_fd)
    unlink_if_same(dir_fd, name, Identity.of(st))
    return spool_dir / bid


class Collector:
    def __init__(self, spool_dir: Path, submit: Callable[[Path], None], dump_dirs: tuple[Path, ...] = (),
                 *, stable: float = 2.0, rescan: float = 30.0, retry_after: float = 300.0,
                 backoff_max: float = 60.0):
        self.spool_dir = Path(spool_dir)
        self.dump_dirs = tuple(Path(d) for d in dump_dirs)
        self.submit = submit
        self.stable = stable
        self.rescan_every = rescan
        self.retry_after = retry_after
        self.backoff_max = backoff_max
        self._pending: queue.Queue[Path] = queue.Queue()
        self._queued: set[str] = set()  # bundle ids in _pending or _held: offered once at a time
        self._held: Path | None = None  # its hand-off failed: first in line after the back-off
        self._delay = 0.0  # the current back-off; 0 when the hand-off works
        self._resume_at = 0.0  # monotonic time the back-off ends
        self._outage_since: float | None = None
        self._submitted: dict[str, float] = {}  # bundle id -> when handed over
        self._sizes: dict[Path, tuple[Identity, float]] = {}  # dump file -> (inode and size, since)
        self._refused: dict[Path, Identity] = {}  # dump files not to take (logged once)
        self._dirs_refused: dict[Path, str] = {}  # dump directories not to scan, and why
        self._incoming: dict[Path, float] = {}  # new bundle dir -> when it appeared
        self._lock = threading.Lock()

    # -- finding work --------------------------------------------------------
    def offer(self, bundle: Path) -> None:
        with self._lock:
            last = self._submitted.get(bundle.name)
            if bundle.name in self._queued or (last is not None and time.monotonic() - last < self.retry_after):
                return
            self._submitted[bundle.name] = time.monotonic()
            self._queued.add(bundle.name)
        self._pending.put(bundle)

    def scan(self) -> None:
        if self.spool_dir.is_dir():
            for bundle in spool.finished_bundles(self.spool_dir):
                self.offer(bundle)
        for d in self.dump_dirs:
            self._scan_dump_dir(d)

    def _scan_dump_dir(self, directory: Path) -> None:
        """Take each core that has kept its size for ``stable`` seconds and
        that no process has open. The listing only chooses names: what is
        read is decided once, when the name is opened (``collector.dumpdir``).
        The way to the directory must be ours: a user who could swap it for a
        symlink would have us read, and remove, the files of any directory."""
        why = untrusted_path(directory, judge_leaf=False, owners=tuple({0, os.geteuid()}))
        if why:
            if self._dirs_refused.get(directory) != why:  # said once
                log.error("dump directory %s refused: %s", directory, why)
            self._dirs_refused[directory] = why
            return
        self._dirs_refused.pop(directory, None)
        try:
            dir_fd = os.open(directory, _DIR)
        except OSError as exc:
            log.warning("dump directory %s: %s", directory, exc.strerror)
            return
        try:
            listed = self._listing(dir_fd)
            names = {directory / name for name, _ in listed}
            for known in (self._sizes, self._refused):  # forget what is gone
                for path in [p for p in known if p.parent == directory and p not in names]:
                    del known[path]
            for name, seen in listed:
                self._consider(directory, dir_fd, name, seen)
        finally:
            os.close(dir_fd)

    def _listing(self, dir_fd: int) -> list[tuple[str, Identity]]:
        out = []
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        out.append((entry.name, Identity.of(entry.stat(follow_symlinks=False))))
                except OSError:
                    continue  # gone since the listing
        return out

    def _consider(self, directory: Path, dir_fd: int, name: str, seen: Identity) -> None:
        path = directory / name
        if self._refused.get(path) == seen:
            return  # said once already
        now = time.monotonic()
        last = self._sizes.get(path)
        if last is None or last[0] != seen:
            self._sizes[path] = (seen, now)
            return
        if now - last[1] < self.stable or seen.size == 0 or writers_of(path):
            return
        try:
            fd, st = open_dump(dir_fd, name)
        except DumpRefused as exc:
            self._sizes.pop(path, None)
            self._refused[path] = seen
            log.error("dump directory %s: %s", directory, exc)
            return
        if Identity.of(st) != seen:  # replaced or still growing: watch it again
            os.close(fd)
            self._sizes[path] = (Identity.of(st), now)
            return
        try:
            bundle = take_dump(dir_fd, name, fd, st, self.spool_dir, where=directory)
        except (OSError, spool.SpoolError) as exc:
            log.error("could not take %s: %s", path, exc)
            return
        self._sizes.pop(path, None)
        log.info("took %s from the dump directory as %s", name, bundle.name)
        self.offer(bundle)

    def _check_incoming(self, give_up: float = 600.0) -> None:
        """Offer new bundle directories whose meta.json has been written."""
        with self._lock:
            incoming = list(self._incoming.items())
        for path, since in incoming:
            finished = Bundle(path).is_finished()
            if finished or time.monotonic() - since > give_up:  # else the rescan finds it
                with self._lock:
                    self._incoming.pop(path, None)
                if finished:
                    self.offer(path)

    # -- handing over ----------------------------------------------------------
    @property
    def backing_off(self) -> bool:
        return time.monotonic() < self._resume_at

    def drain(self, timeout: float = 0.5) -> int:
        """Hand pending bundles to ``submit``, waiting at most ``timeout``
        for the first. A failed hand-off backs the whole queue off (see the
        module docstring); a failure of one bundle is logged and it is
        offered again later."""
        handed = 0
        while True:
            wait = self._resume_at - time.monotonic()
            if wait > 0:  # backing off: nothing is handed over, the caller goes on scanning
                if handed == 0:
                    time.sleep(min(timeout, wait))
                return handed
            if self._held is not None:
                bundle, self._held = self._held, None
            else:
                try:
                    bundle = self._pending.get(timeout=timeout if handed == 0 else 0)
                except queue.Empty:
                    return handed
            if spool.is_done(bundle):
                self._forget(bundle)
                continue
            try:
                self.submit(bundle)
            except HandoffError as exc:
                self._held = bundle
                self._back_off(exc)
                continue
            except Exception as exc:  # the bundle's own failure: the next scan offers it again
                self._forget(bundle)
                with self._lock:
                    self._submitted.pop(bundle.name, None)
                log.error("bundle %s not handed over: %s", bundle.name, _line(exc))
                continue
            self._forget(bundle)
            with self._lock:
                self._submitted[bundle.name] = time.monotonic()  # retry_after counts from the hand-off
            handed += 1
            self._recovered()

    def _forget(self, bundle: Path) -> None:
        with self._lock:
            self._queued.discard(bundle.name)

    def _back_off(self, exc: Exception) -> None:
        now = time.monotonic()
        self._delay = min(self.backoff_max, self._delay * 2 if self._delay else BACKOFF_FIRST)
        self._resume_at = now + self._delay
        if self._outage_since is None:  # once per outage
            self._outage_since = now
            log.error("hand-off failed: %s; %d bundles wait, tried again with back-off (at most every %.0f s)",
                      _line(exc), len(self._queued), self.backoff_max)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.warning("hand-off works again after %.0f s", time.monotonic() - self._outage_since)
        self._outage_since = None
        self._delay = 0.0

    def run(self, stop: threading.Event) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        collector = self

        class Events(FileSystemEventHandler):
            # The spool is watched one level deep only (a recursive watch would
            # follow every bundle's root/ tree): a new bundle directory is
            # noted, and offered once its meta.json appears.
            def on_created(self, event):
                p = Path(event.src_path)
                if event.is_directory and p.parent == collector.spool_dir:
                    with collector._lock:
                        collector._incoming[p] = time.monotonic()

            def on_closed(self, event):  # a core in a dump directory finished writing
                if Path(event.src_path).parent in collector.dump_dirs:
                    collector._sizes.pop(Path(event.src_path), None)

        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(Events(), str(self.spool_dir), recursive=False)
        for d in self.dump_dirs:
            if d.is_dir():
                observer.schedule(Events(), str(d), recursive=False)
        observer.start()
        try:
            next_scan = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_scan:
                    self.scan()
                    # dump files need a second look to be seen stable
                    next_scan = time.monotonic() + (min(self.rescan_every, self.stable) if self._sizes
                                                    else self.rescan_every)
                self._check_incoming()
                self.drain(timeout=0.2)
        finally:
            observer.stop()
            observer.join(timeout=5)


def _line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
