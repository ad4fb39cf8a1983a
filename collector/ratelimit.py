"""Crash-storm limits: at most N cores kept per build and container, and at
most M over the whole host, in a sliding window.

A service that crashes in a restart loop would otherwise fill the disk with
identical cores, and a hostile one would hold the handler busy. The key is
what crashed, not what it is called: the executable's build (its build-id,
else a hash of its content, ``collector.exebuild``), the container and the
real uid, so copying a binary under new names gains nothing, and a build-id
forged in one container or by one user cannot spend another's budget. The
host-wide cap bounds what many different builds can do together. Beyond
either limit the crash is still recorded (``meta.json`` with ``dropped``
starting "rate limit"), only the core is not read.

The counters live in ``SPOOL/.ratelimit.json`` (0600), read and rewritten
under an ``flock`` by each handler; ``decide`` is the pure part.
Only kept cores count, so a steady storm keeps one core per window slot.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time

STATE = ".ratelimit.json"
HOST = "host"  # the host-wide count's key (the others are hex)
MAX_KEYS = 1000  # builds remembered; the least recently seen are forgotten
LOCK_WAIT = 2.0  # seconds; after that the crash is let through (better a core too many)


def key_for(build: str, container: str | None = None, uid: int | None = None) -> str:
    """A short, fixed-size key for one build in one container run by one user."""
    raw = f"{build}\0{container or ''}\0{'' if uid is None else uid}"
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def decide(state: dict, key: str, now: float, limit: int, host_limit: int,
           window: float, host: str = HOST) -> tuple[str | None, dict]:
    """(None to keep the core, else why not; new state). ``state`` maps key
    -> list of times of kept cores, ``host`` those of all kept cores (stack
    cores are counted apart, under keys of their own)."""
    fresh: dict[str, list[float]] = {}
    for k, times in state.items() if isinstance(state, dict) else ():
        if isinstance(k, str) and isinstance(times, list):
            recent = [t for t in times if isinstance(t, (int, float)) and now - window < t <= now + window]
            if recent:
                fresh[k] = recent
    mine, all_kept = fresh.get(key, []), fresh.get(host, [])
    if len(mine) >= limit:
        return f"rate limit: {limit} cores of this build per {window:g} s", fresh
    if len(all_kept) >= host_limit:
        return f"rate limit: {host_limit} cores on this host per {window:g} s (host_rate_limit)", fresh
    fresh[key], fresh[host] = mine + [now], all_kept + [now]
    if len(fresh) > MAX_KEYS:
        newest = sorted((k for k in fresh if k != HOST), key=lambda k: max(fresh[k]), reverse=True)
        fresh = {k: fresh[k] for k in [HOST, *newest[:MAX_KEYS - 1]] if k in fresh}
    return None, fresh


def check(spool_fd: int, key: str, limit: int, host_limit: int, window: float,
          now: float | None = None, host: str = HOST) -> tuple[str | None, str | None]:
    """(None to keep the core or why not, a problem to record or None),
    updating the state file."""
    from collector.spool import write_all

    now = time.time() if now is None else now
    try:
        fd = os.open(STATE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=spool_fd)
    except OSError as exc:
        return None, f"rate limit state unusable ({exc.strerror}); core kept"
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                    return None, "rate limit state locked too long; core kept"
                time.sleep(0.01)
        raw = b""
        while chunk := os.read(fd, 1 << 20):
            raw += chunk
        problem = None
        try:
            state = json.loads(raw) if raw.strip() else {}
        except ValueError:
            state, problem = {}, "rate limit state was corrupt and was reset"
        dropped, state = decide(state, key, now, limit, host_limit, window, host)
        data = json.dumps(state, separators=(",", ":")).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        write_all(fd, data)
        return dropped, problem
    finally:
        os.close(fd)  # releases the lock
