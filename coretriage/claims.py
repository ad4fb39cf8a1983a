"""One analysis of a spool bundle at a time, wherever the workers run.

Queue delivery is at least once: a message comes again when its worker
died, when it ran longer than the broker's visibility timeout, or when the
collector re-submits a bundle not yet done. ``bundle_held`` makes the extra
deliveries harmless. It holds two locks, and gives up (``BundleBusy``, "try
later") when either is taken:

- an ``flock`` on the bundle's directory: the kernel drops it the moment its
  holder dies, for every process on this machine (and on others that share
  the data dir over a file system whose locks work across machines). It is
  the lock the handler writes a bundle under and eviction takes, so neither
  touches a bundle under analysis;
- a claim row in the database (``bundle_claims``), for workers that share
  the PostgreSQL but not a lock: a short lease, renewed by a thread while
  the analysis runs, so a dead worker's claim runs out within ``LEASE``.

Together with ``crashes.bundle_id`` (a bundle is recorded once, whatever
happened to its core since) this makes the record exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import threading
from pathlib import Path

from analyzer.errors import CoretriageError

LEASE = 20.0  # seconds a claim outlives its last renewal
RENEW_EVERY = 5.0
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class BundleBusy(CoretriageError):
    """Another process is analyzing this bundle right now: try again later."""


def holder_id() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


def _renew(store, bundle_id: str, holder: str, stop: threading.Event, every: float, lease: float) -> None:
    while not stop.wait(every):
        try:
            store.renew_claim(bundle_id, holder, lease)
        except Exception:  # a database hiccup: the flock still holds here, the next renewal may work
            continue


@contextlib.contextmanager
def bundle_held(store, bundle_dir: Path, lease: float = LEASE, renew_every: float = RENEW_EVERY):
    """Hold ``bundle_dir`` for one analysis; raises BundleBusy when another
    process holds it. The lock's fd is close-on-exec, and the analysis
    sandbox closes every fd it does not need, so no child keeps it alive."""
    bundle_dir = Path(bundle_dir)
    fd = os.open(bundle_dir, _DIR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleBusy(f"bundle {bundle_dir.name} is being analyzed by another process") from None
        holder = holder_id()
        if not store.claim_bundle(bundle_dir.name, holder, lease):
            raise BundleBusy(f"bundle {bundle_dir.name} is claimed by another worker")
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(store, bundle_dir.name, holder, stop, renew_every, lease),
                                   name="claim-renewal", daemon=True)
        renewer.start()
        try:
            yield holder
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(Exception):  # unreleased, it runs out by itself
                store.release_claim(bundle_dir.name, holder)
    finally:
        os.close(fd)  # drops the flock
