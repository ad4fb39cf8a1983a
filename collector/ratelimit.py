"""Crash-storm limit: at most N cores kept per executable in a sliding window.

A service that crashes in a restart loop would otherwise fill the disk with
identical cores. Beyond the limit the crash is still recorded (``meta.json``
with ``dropped: "rate limit"``), only the core is not kept.

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
MAX_KEYS = 1000  # executables remembered; the least recently seen are forgotten
LOCK_WAIT = 2.0  # seconds; after that the crash is let through (better a core too many)


def key_for(exe: str) -> str:
    """A short, fixed-size key (the exe path can be anything the process chose)."""
    return hashlib.sha256(exe.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def decide(state: dict, key: str, now: float, limit: int, window: float) -> tuple[bool, dict]:
    """(keep the core?, new state). ``state`` maps key -> list of times of kept cores."""
    fresh: dict[str, list[float]] = {}
    for k, times in state.items() if isinstance(state, dict) else ():
        if isinstance(k, str) and isinstance(times, list):
            recent = [t for t in times if isinstance(t, (int, float)) and now - window < t <= now + window]
            if recent:
                fresh[k] = recent
    mine = fresh.get(key, [])
    allowed = len(mine) < limit
    if allowed:
        fresh[key] = mine + [now]
    if len(fresh) > MAX_KEYS:
        newest = sorted(fresh, key=lambda k: max(fresh[k]), reverse=True)[:MAX_KEYS]
        fresh = {k: fresh[k] for k in newest}
    return allowed, fresh


def check(spool_fd: int, exe: str, limit: int, window: float, now: float | None = None) -> tuple[bool, str | None]:
    """(keep the core?, a problem to record or None), updating the state file."""
    now = time.time() if now is None else now
    try:
        fd = os.open(STATE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=spool_fd)
    except OSError as exc:
        return True, f"rate limit state unusable ({exc.strerror}); core kept"
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                    return True, "rate limit state locked too long; core kept"
                time.sleep(0.01)
        raw = b""
        while chunk := os.read(fd, 1 << 20):
            raw += chunk
        problem = None
        try:
            state = json.loads(raw) if raw.strip() else {}
        except ValueError:
            state, problem = {}, "rate limit state was corrupt and was reset"
        allowed, state = decide(state, key_for(exe), now, limit, window)
        data = json.dumps(state, separators=(",", ":")).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return allowed, problem
    finally:
        os.close(fd)  # releases the lock
