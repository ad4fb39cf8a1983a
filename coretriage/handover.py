"""The central side's hand-over of received bundles to the analysis.

A commit (``coretriage.receive``) answers as soon as its bundle is in the
spool; this thread then gives it to ``Wiring.submit()``: the analysis in
this process, or a Celery task when a broker is configured. A broker that
cannot be reached (``collector.watch.HandoffError``) says nothing about the
bundle: the whole queue waits once, 1, 2, 4 ... seconds (at most
``BACKOFF_MAX``), logged when the outage starts and when it ends, and that
bundle goes first afterwards, as the collector's hand-off does. Any other
failure is the bundle's own: it is tried again after ``retry``. On start it offers
every received bundle not yet done, so a server stopped between the commit
and the analysis loses nothing. Several server processes (gunicorn workers)
sharing a data dir may offer one bundle each: the analysis takes one bundle
once (``coretriage.claims``), and a second offer finds it busy (and looks
again later, in case its holder dies) or done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("coretriage.ingest")
BACKOFF_MAX = 60.0


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
        self._delay = 0.0  # the queue's back-off while the broker is away
        self._outage_since: float | None = None

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
        from collector.watch import HandoffError

        held = None
        while True:
            bundle = held if held is not None else self._queue.get()  # a held bundle goes first
            held = None
            try:
                done = self._hand_over(bundle)
            except HandoffError as exc:  # the broker, not the bundle: the queue waits once
                held = bundle
                self._back_off(exc)
                continue
            except Exception as exc:  # never let one bundle stop the thread
                log.error("bundle %s not handed over: %s", bundle.name, str(exc).splitlines()[0] if str(exc) else exc)
                done = False
            else:
                self._recovered()
            with self._lock:
                self._queued.discard(bundle.name)
            if not done:
                threading.Timer(self.retry, self.offer, args=(bundle,)).start()

    def _back_off(self, exc: Exception) -> None:
        self._delay = min(BACKOFF_MAX, self._delay * 2 if self._delay else 1.0)
        if self._outage_since is None:  # one line per outage
            self._outage_since = time.monotonic()
            log.error("hand-over failed: %s; %d received bundles wait, tried again with back-off (at most every "
                      "%.0f s)", str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                      self._queue.qsize() + 1, BACKOFF_MAX)
        time.sleep(self._delay)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.warning("hand-over works again after %.0f s", time.monotonic() - self._outage_since)
            self._outage_since = None
        self._delay = 0.0

    def _hand_over(self, bundle: Path) -> bool:
        from collector.spool import is_done
        from coretriage.claims import BundleBusy

        if not bundle.is_dir() or is_done(bundle):
            return True
        if self._submit is None:
            self._submit = self._submit_of()
        started = time.monotonic()
        try:
            self._submit(bundle)
        except BundleBusy:
            return False  # another server process analyzes it now: look again after the pause
        log.info("handed over %s in %.1f s", bundle.name, time.monotonic() - started)
        return True
