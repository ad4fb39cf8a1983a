"""The central side's hand-over of received bundles to the analysis.

A commit (``coretriage.receive``) answers as soon as its bundle is in the
spool; this thread then gives it to ``Wiring.submit()``: the analysis in
this process, or a Celery task when a broker is configured. A hand-over
that fails (a dead broker) is tried again after a pause. On start it offers
every received bundle not yet done, so a server stopped between the commit
and the analysis loses nothing. The bundle directory is ``flock``'ed while
it is handed over, so several server processes (gunicorn workers) sharing a
data dir never analyze one bundle twice at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("coretriage.ingest")


class Handover:
    def __init__(self, spool_dir: Path, submit_of: Callable[[], Callable[[Path], None]], retry: float = 10.0):
        self.spool_dir = Path(spool_dir)
        self._submit_of = submit_of
        self._submit = None
        self.retry = retry
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def backlog(self) -> int:
        return self._queue.qsize()

    def offer(self, bundle: Path) -> None:
        with self._lock:
            if bundle.name in self._queued:
                return
            self._queued.add(bundle.name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-handover", daemon=True)
                self._thread.start()
        self._queue.put(Path(bundle))

    def offer_waiting(self) -> int:
        """Offer every received bundle of the spool not yet done."""
        from collector.spool import finished_bundles, read_meta

        n = 0
        for bundle in finished_bundles(self.spool_dir):
            try:
                if read_meta(bundle).uploaded_by:
                    self.offer(bundle)
                    n += 1
            except (OSError, ValueError):
                continue
        return n

    def _run(self) -> None:
        while True:
            bundle = self._queue.get()
            try:
                done = self._hand_over(bundle)
            except Exception as exc:  # never let one bundle stop the thread
                log.error("bundle %s not handed over: %s", bundle.name, str(exc).splitlines()[0] if str(exc) else exc)
                done = False
            with self._lock:
                self._queued.discard(bundle.name)
            if not done:
                threading.Timer(self.retry, self.offer, args=(bundle,)).start()

    def _hand_over(self, bundle: Path) -> bool:
        from collector.spool import is_done

        try:
            fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # another server process has it
            if is_done(bundle):
                return True
            if self._submit is None:
                self._submit = self._submit_of()
            started = time.monotonic()
            self._submit(bundle)
            log.info("handed over %s in %.1f s", bundle.name, time.monotonic() - started)
            return True
        finally:
            os.close(fd)
