"""Hosts that upload their crashes to this central coretriage: their names,
tokens and heartbeats. Pure: the store keeps the rows (``Store.add_host``...),
the CLI (``host add|list|revoke``) and the web UI's /hosts show them.

A host token (``cth_...``) is not a user's API token (``ct_...``): it is
looked up only in ``hosts`` and only by the ingest API (``webui/ingest.py``),
so it reads nothing, and a user's token or session cannot upload. Only its
SHA-256 is stored. A crash a host uploads is recorded under the host's
registered name, whatever its meta.json claims.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import dataclass

from analyzer.errors import CoretriageError

TOKEN_PREFIX = "cth_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
STALE_INTERVALS = 3  # heartbeats missed before a host is stale
DEFAULT_INTERVAL = 60.0


class HostError(CoretriageError):
    """A bad host name, an unknown host, a malformed heartbeat."""


def new_host_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_host_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HostError(f"{name!r} is not a host name (letters, digits, '.', '_', '-'; at most 63; "
                        "starting with a letter or digit)")
    return name


# ---- heartbeats -------------------------------------------------------------

MAX_REPORT = 64 * 1024
_STATUSES = ("OK", "WARN", "FAIL")


@dataclass(frozen=True)
class DoctorLine:
    name: str
    status: str
    message: str


def parse_report(data: object) -> dict:
    """A heartbeat's report, checked and normalised; HostError (one line)
    for anything malformed. Every field is optional but must have its type::

        {"version": "1.2.0", "core_pattern_ours": true, "core_pattern": "|/usr/bin/python3 ...",
         "doctor": [{"name": "core_pattern", "status": "OK", "message": "..."}],
         "spool_bytes": 123, "waiting": 0, "last_crash_at": 1795619038.0, "interval": 60}
    """
    if not isinstance(data, dict):
        raise HostError("the heartbeat report must be a JSON object")
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise HostError(f"unknown field(s) in the heartbeat report: {', '.join(sorted(unknown))[:200]}")
    out: dict = {}
    for name, value in data.items():
        if value is None:
            out[name] = None
            continue
        out[name] = _FIELDS[name](name, value)
    return out


def _text(limit):
    def check(name, value):
        if not isinstance(value, str) or len(value) > limit:
            raise HostError(f"heartbeat field {name} must be a string of at most {limit} characters")
        return value
    return check


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 1 << 62:
        raise HostError(f"heartbeat field {name} must be a non-negative integer")
    return value


def _time(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise HostError(f"heartbeat field {name} must be a time in seconds")
    return float(value)


def _flag(name, value):
    if not isinstance(value, bool):
        raise HostError(f"heartbeat field {name} must be true or false")
    return value


def _doctor(name, value):
    if not isinstance(value, list) or len(value) > 64:
        raise HostError("heartbeat field doctor must be a list of at most 64 checks")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or item.get("status") not in _STATUSES or not isinstance(item.get("message", ""), str):
            raise HostError('each doctor check must be {"name": str, "status": "OK"|"WARN"|"FAIL", "message": str}')
        out.append({"name": item["name"][:80], "status": item["status"], "message": item.get("message", "")[:300]})
    return out


_FIELDS = {"version": _text(64), "core_pattern_ours": _flag, "core_pattern": _text(256), "doctor": _doctor,
           "spool_bytes": _count, "waiting": _count, "last_crash_at": _time, "interval": _time,
           "hostname": _text(255)}


# ---- what the list and the page show ----------------------------------------

@dataclass(frozen=True)
class HostRow:
    name: str
    created: float
    revoked_at: float | None = None
    last_heartbeat: float | None = None
    report: dict | None = None
    last_crash_at: float | None = None

    def interval(self) -> float:
        value = (self.report or {}).get("interval")
        return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_INTERVAL

    def is_stale(self, now: float | None = None) -> bool:
        """No heartbeat for STALE_INTERVALS of its own interval (or never one)."""
        if self.revoked_at is not None:
            return False
        now = time.time() if now is None else now
        return self.last_heartbeat is None or now - self.last_heartbeat > STALE_INTERVALS * self.interval()

    def pattern_replaced(self) -> bool:
        return (self.report or {}).get("core_pattern_ours") is False

    def markers(self, now: float | None = None) -> list[str]:
        out = []
        if self.revoked_at is not None:
            out.append("REVOKED")
        if self.is_stale(now):
            out.append("STALE")
        if self.pattern_replaced():
            out.append("PATTERN REPLACED")
        failed = [c["name"] for c in (self.report or {}).get("doctor") or () if c.get("status") == "FAIL"]
        if failed:
            out.append("DOCTOR FAIL: " + ",".join(failed))
        return out

    def to_json(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        report = self.report or {}
        return {"name": self.name, "created": self.created, "revoked_at": self.revoked_at,
                "last_heartbeat": self.last_heartbeat,
                "age": None if self.last_heartbeat is None else round(now - self.last_heartbeat, 1),
                "version": report.get("version"), "core_pattern_ours": report.get("core_pattern_ours"),
                "spool_bytes": report.get("spool_bytes"), "waiting": report.get("waiting"),
                "last_crash_at": self.last_crash_at, "doctor": report.get("doctor") or [],
                "stale": self.is_stale(now), "pattern_replaced": self.pattern_replaced(),
                "markers": self.markers(now)}


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def format_hosts(rows: list[HostRow], now: float | None = None) -> str:
    """``coretriage host list``: one line per host."""
    now = time.time() if now is None else now
    if not rows:
        return "no hosts (coretriage host add NAME)"
    lines = [f"{'NAME':<20} {'HEARTBEAT':<10} {'VERSION':<12} {'PATTERN':<8} {'SPOOL':>10} {'WAITING':>7} "
             f"{'LAST CRASH':<11} MARKERS"]
    for r in rows:
        report = r.report or {}
        ours = report.get("core_pattern_ours")
        lines.append(f"{r.name:<20} {age(None if r.last_heartbeat is None else now - r.last_heartbeat):<10} "
                     f"{str(report.get('version') or '-')[:12]:<12} "
                     f"{'-' if ours is None else ('ours' if ours else 'OTHER'):<8} "
                     f"{size(report.get('spool_bytes')):>10} "
                     f"{'-' if report.get('waiting') is None else report['waiting']:>7} "
                     f"{age(None if r.last_crash_at is None else now - r.last_crash_at):<11} "
                     + " ".join(r.markers(now)))
    return "\n".join(lines)
