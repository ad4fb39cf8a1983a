"""Why a crash's full core was not kept, as one of a few reasons: the
``coretriage_cores_dropped_total`` label (bounded: never the free text).

The collector writes its reason in words in the bundle's ``dropped``
(``collector.policy``, ``collector.corestream``); the crash keeps it in its
meta with ``core_kind`` (``coretriage.pipeline``). Pure: no database.
"""

from __future__ import annotations

REASONS = ("size", "rate", "space", "policy", "other")


def drop_reason(meta: dict) -> str | None:
    """The reason a crash has no full core, or None when it has one (or its
    meta predates ``core_kind``: a core ingested by hand)."""
    kind = meta.get("core_kind")
    if kind not in ("stack", "none"):
        return None
    why = meta.get("dropped")
    if not isinstance(why, str) or not why:
        # no reason from the handler: evicted from the spool later, else unknown
        return "space" if "evicted" in str(meta.get("core_kind_reason") or "") else "other"
    why = why.lower()
    if why.startswith("rate limit") or "rate_limit" in why:
        return "rate"
    if "max_core_size" in why:
        return "size"
    if "disk space" in why or "free_space" in why or "no space left" in why or "evicted" in why:
        return "space"
    if "set-uid" in why or "policy" in why:
        return "policy"
    return "other"
