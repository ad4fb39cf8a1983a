"""The collector daemon: hand every finished bundle to the analysis, once.

Watches the spool (the pipe handler's bundles) and any dump directories
(hosts that keep a file core_pattern, containers writing cores to a mounted
volume) with watchdog, and rescans both on start and every ``rescan``
seconds, so nothing that arrived while it was down, or whose hand-off
failed (a dead broker), is lost. ``submit(bundle_dir)`` is given by the
caller: the analysis in-process, or a Celery task; the collector never
imports the analyzer.
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

from collector import spool
from collector.bundle import Bundle, BundleMeta, bundle_id

log = logging.getLogger("coretriage.collector")
CHUNK = 1 << 20


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
    (compressed core, then meta.json last) and remove the original."""
    import zstandard

    st = core.stat()
    spool_fd = spool.open_spool(spool_dir)
    try:
        bid = bundle_id(int(st.st_mtime), 0, secrets.token_hex(4))
        bundle_fd = spool.create_bundle(spool_fd, bid)
        try:
            fd = spool.create_file(bundle_fd, Bundle.CORE)
            with open(core, "rb") as src, os.fdopen(fd, "wb") as out:
                zstandard.ZstdCompressor(level=3).copy_stream(src, out, read_size=CHUNK)
                out.flush()
                os.fsync(out.fileno())
            meta = BundleMeta(id=bid, pid=0, signal=0, crash_time=int(st.st_mtime), host_time=time.time(),
                              hostname=socket.gethostname(), core_file=Bundle.CORE, core_size=st.st_size,
                              problems=(f"taken from dump directory {core.parent} as {core.name!r}: "
                                        "pid and signal come from the core's notes",))
            spool.write_meta(bundle_fd, meta)
        finally:
            os.close(bundle_fd)
    finally:
        os.close(spool_fd)
    core.unlink()
    return spool_dir / bid


class Collector:
    def __init__(self, spool_dir: Path, submit: Callable[[Path], None], dump_dirs: tuple[Path, ...] = (),
                 *, stable: float = 2.0, rescan: float = 30.0, retry_after: float = 300.0):
        self.spool_dir = Path(spool_dir)
        self.dump_dirs = tuple(Path(d) for d in dump_dirs)
        self.submit = submit
        self.stable = stable
        self.rescan_every = rescan
        self.retry_after = retry_after
        self._pending: queue.Queue[Path] = queue.Queue()
        self._submitted: dict[str, float] = {}  # bundle id -> when handed over
        self._sizes: dict[Path, tuple[int, float]] = {}  # dump file -> (size, since)
        self._incoming: dict[Path, float] = {}  # new bundle dir -> when it appeared
        self._lock = threading.Lock()

    # -- finding work --------------------------------------------------------
    def offer(self, bundle: Path) -> None:
        with self._lock:
            last = self._submitted.get(bundle.name)
            if last is not None and time.monotonic() - last < self.retry_after:
                return
            self._submitted[bundle.name] = time.monotonic()
        self._pending.put(bundle)

    def scan(self) -> None:
        if self.spool_dir.is_dir():
            for bundle in spool.finished_bundles(self.spool_dir):
                self.offer(bundle)
        for d in self.dump_dirs:
            self._scan_dump_dir(d)

    def _scan_dump_dir(self, directory: Path) -> None:
        try:
            entries = [p for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
        except OSError as exc:
            log.warning("dump directory %s: %s", directory, exc.strerror)
            return
        now = time.monotonic()
        for path in entries:
            if path.name.startswith("."):
                continue
            size = path.stat().st_size
            seen = self._sizes.get(path)
            if seen is None or seen[0] != size:
                self._sizes[path] = (size, now)
                continue
            if now - seen[1] < self.stable or size == 0 or writers_of(path):
                continue
            try:
                bundle = import_dump(path, self.spool_dir)
            except (OSError, spool.SpoolError) as exc:
                log.error("could not take %s: %s", path, exc)
                continue
            self._sizes.pop(path, None)
            log.info("took %s from the dump directory as %s", path.name, bundle.name)
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
    def drain(self, timeout: float = 0.5) -> int:
        """Hand pending bundles to ``submit``; a failure is logged and retried later."""
        handed = 0
        while True:
            try:
                bundle = self._pending.get(timeout=timeout if handed == 0 else 0)
            except queue.Empty:
                return handed
            if spool.is_done(bundle):
                continue
            try:
                self.submit(bundle)
                handed += 1
            except Exception as exc:  # analysis or broker failure: the bundle stays for the next scan
                with self._lock:
                    self._submitted.pop(bundle.name, None)
                log.error("bundle %s not handed over: %s", bundle.name, str(exc).splitlines()[0] if str(exc) else exc)

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
