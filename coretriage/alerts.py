"""Which alert events a stored crash raises: pure decisions, no database.

- ``new``: the crash made its group (one per group, ever);
- ``regression``: its group was resolved;
- ``spike``: its group's crashes in the last ``window`` seconds reach
  ``factor`` times the group's trailing average per window (over
  ``baseline`` seconds before that) and at least ``minimum``; one event per
  spike: a spike is open until a window after its last spiking crash, and
  an open spike raises nothing more.

An ignored group raises nothing. The store calls ``decide`` inside the
transaction that stores the crash and writes the events to its outbox.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

KINDS = ("new", "regression", "spike")


@dataclass(frozen=True)
class SpikePolicy:
    window: float = 600.0  # seconds
    baseline: float = 86400.0  # seconds of history before the window
    factor: float = 10.0
    minimum: int = 10


@dataclass(frozen=True)
class Seen:
    """What the store knows when a crash is filed in its group."""
    created: bool  # the crash made the group
    state_before: str  # the group's state before this crash
    in_window: int  # the group's crashes in (t - window, t], this one included
    in_baseline: int  # the group's crashes in (t - window - baseline, t - window]
    spike_open: bool  # the group has a spike going on


def spiking(seen: Seen, policy: SpikePolicy) -> bool:
    average = seen.in_baseline / max(policy.baseline / policy.window, 1.0)
    return seen.in_window >= max(policy.minimum, policy.factor * average)


def decide(seen: Seen, policy: SpikePolicy = SpikePolicy()) -> tuple[str, ...]:
    if seen.state_before == "ignored":
        return ()
    events = []
    if seen.created:
        events.append("new")
    elif seen.state_before == "resolved":
        events.append("regression")
    if not seen.spike_open and spiking(seen, policy):
        events.append("spike")
    return tuple(events)


def new_after_reprocess(moves: dict[str, tuple[int, int]], before: set[int], alerted: set[int]) -> dict[int, str]:
    """The ``new`` events a reprocess raises: group id -> the crash that raises it.

    ``moves``: crash id -> (its group before, its group after); ``before``:
    the group ids that existed before; ``alerted``: those of them whose
    crashes the team has heard of (a ``new`` event) or chose not to (ignored).
    A reprocess finds no crash that just happened, so it raises no
    ``regression`` or ``spike``; a group it made raises ``new`` only when none
    of its crashes came from an alerted group: a rule change that splits or
    renames known groups tells nobody anything new, while crashes nobody was
    told of (stored before alerts existed) get their one ``new``."""
    made: dict[int, list[tuple[str, int]]] = {}
    for crash_id, (old, new) in sorted(moves.items()):
        if new not in before:
            made.setdefault(new, []).append((crash_id, old))
    return {gid: crashes[0][0] for gid, crashes in sorted(made.items())
            if not any(old in alerted for _, old in crashes)}


def dedup_key(kind: str, group_id: int, crash_id: str) -> str:
    """The outbox's unique key: one ``new`` per group; the rest per crash."""
    return f"new:g{group_id}" if kind == "new" else f"{kind}:{crash_id}"


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str  # webhook | email
    target: str
    secret: str | None = None
    events: tuple[str, ...] = KINDS
    executable: str | None = None  # globs; None matches anything
    host: str | None = None
    image: str | None = None
    quiet: float = 0.0  # seconds: after an alert of a group, none of that group to this channel for so long
    digest: float = 0.0  # seconds: collect the events and send one message per period; 0 sends each at once

    def wants(self, kind: str, executable: str | None, host: str | None, image: str | None) -> bool:
        if kind not in self.events and kind != "test":
            return False
        for pattern, value in ((self.executable, executable), (self.host, host), (self.image, image)):
            if pattern and not fnmatch.fnmatchcase(value or "", pattern):
                return False
        return True


def parse_events(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown event kind(s) {', '.join(bad) or '(none)'}: use {', '.join(KINDS)}")
    return kinds


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` -> seconds."""
    t = text.strip().lower()
    number, unit = (t[:-1], t[-1]) if t[-1:] in _UNITS else (t, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: a number of seconds, or with s, m, h or d") from None
    if not 0 <= value <= 31 * 86400 or value != value:
        raise ValueError(f"{text!r}: a duration between 0 and 31 days")
    return value


def _name_ok(name: str) -> bool:
    return 0 < len(name) <= 64 and name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
        and name.isascii()


def make_channel(name: str, *, webhook: str | None = None, email: str | None = None, secret: str | None = None,
                 events: str = ",".join(KINDS), executable: str | None = None, host: str | None = None,
                 image: str | None = None, quiet: str | float = 0.0, digest: str | float = 0.0) -> Channel:
    """A channel from what a user typed (``notify add`` or the /alerts form);
    ValueError says, in one line, what is wrong."""
    name = (name or "").strip()
    if not _name_ok(name):
        raise ValueError("a channel name is 1-64 letters, digits, '-', '_' or '.'")
    webhook, email = (webhook or "").strip() or None, (email or "").strip() or None
    if bool(webhook) == bool(email):
        raise ValueError("give one of a webhook URL or an email address")
    if webhook and (not webhook.startswith(("http://", "https://")) or any(c.isspace() for c in webhook)):
        raise ValueError(f"a webhook must be an http:// or https:// URL, not {webhook!r}")
    if email and ("@" not in email or any(c in email for c in "\r\n ,;<>")):
        raise ValueError(f"an email channel takes one address, not {email!r}")
    if secret and not webhook:
        raise ValueError("a secret signs webhook requests; email channels have none")
    globs = {k: (v or "").strip() or None for k, v in (("executable", executable), ("host", host), ("image", image))}
    return Channel(name=name, kind="webhook" if webhook else "email", target=webhook or email,
                   secret=secret or None, events=parse_events(events),
                   quiet=parse_duration(str(quiet)) if str(quiet).strip() else 0.0,
                   digest=parse_duration(str(digest)) if str(digest).strip() else 0.0, **globs)
