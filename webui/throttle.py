"""The login throttle: failed logins are counted per user name and per
client address (``Store.add_login_failure``); past either limit within the
window the login answers 429 with Retry-After, without looking at the
password. Unknown names count like known ones, so the throttle tells no one
which names exist."""

from __future__ import annotations

import math
from collections.abc import Mapping


def wait_seconds(failures: Mapping[str, tuple[int, float]], limits: Mapping[str, int],
                 now: float, window: float) -> int:
    """0 when a login may be tried, else the seconds until every key over its
    limit has seen its window pass. ``failures``: key -> (count, first)."""
    wait = 0
    for key, limit in limits.items():
        count, first = failures.get(key, (0, now))
        if count >= limit and now - first < window:
            wait = max(wait, math.ceil(first + window - now))
    return wait
