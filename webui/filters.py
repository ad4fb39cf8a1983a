"""Template helpers: times, skew and a tiny inline SVG chart of crashes per day."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from markupsafe import Markup


def when(ts) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ago(ts) -> str:
    if ts is None:
        return "-"
    s = max(0, time.time() - float(ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return "just now"


def sparkline(counts: list[int], width: int = 120, height: int = 24) -> Markup:
    """Bars, one per day, oldest on the left. Numbers only: nothing to escape."""
    if not counts:
        return Markup("")
    top = max(counts) or 1
    bar = width / len(counts)
    rects = []
    for i, n in enumerate(counts):
        if n:
            h = max(2.0, height * n / top)
            rects.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                         f'height="{h:.1f}"><title>{n}</title></rect>')
    return Markup(f'<svg class="spark" width="{width}" height="{height}" role="img" '
                  f'aria-label="{sum(counts)} crashes in {len(counts)} days">{"".join(rects)}</svg>')


def hexaddr(value) -> str:
    return "-" if value is None else f"{int(value):#x}"


def register(app) -> None:
    app.jinja_env.filters.update(when=when, ago=ago, sparkline=sparkline, hexaddr=hexaddr)
