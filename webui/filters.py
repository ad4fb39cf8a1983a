"""Template helpers: times, skew and a tiny inline SVG chart of crashes per day."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

from markupsafe import Markup

from coretriage.reports import python_status


def when(ts) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ago(ts, now: float | None = None) -> str:
    if ts is None:
        return "-"
    s = max(0, (time.time() if now is None else now) - float(ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return "just now"


def sparkline(counts: list[int], width: int = 120, height: int = 24) -> Markup:
    """Bars, one per day, oldest on the left. Numbers only: nothing to escape."""
    return _sparkline(tuple(counts), width, height)


@functools.lru_cache(maxsize=4096)
def _sparkline(counts: tuple[int, ...], width: int, height: int) -> Markup:
    # a pure function of the counts: most groups of a list page had the same
    # days as on the page before (or none in 30 days), so the SVG is made once
    if not counts:
        return Markup("")
    top = max(counts) or 1
    bar = width / len(counts)
    bar_width = f"{max(bar - 1, 1):.1f}"
    rects = []
    for i, n in enumerate(counts):
        if n:
            h = max(2.0, height * n / top)
            rects.append(f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{bar_width}" '
                         f'height="{h:.1f}"><title>{n}</title></rect>')
    return Markup(f'<svg class="spark" width="{width}" height="{height}" role="img" '
                  f'aria-label="{sum(counts)} crashes in {len(counts)} days">{"".join(rects)}</svg>')


def hexaddr(value) -> str:
    return "-" if value is None else f"{int(value):#x}"


def fold(frames, keep: int = 3) -> list[tuple[str, object]]:
    """Rows for a backtrace: ("frame", f), or ("gap", n) where frames were
    not kept or a run of one function (recursion) is folded after ``keep``."""
    rows: list[tuple[str, object]] = []
    prev, run = None, 0
    for f in frames:
        if prev is not None and f.index != prev.index + 1:
            rows.append(("gap", f"{f.index - prev.index - 1} frames not shown"))
            run = 0
        same = prev is not None and f.function is not None and f.function == prev.function
        run = run + 1 if same else 0
        if run >= keep:
            if rows and rows[-1][0] == "fold":
                rows[-1] = ("fold", (rows[-1][1][0] + 1, f.function))
            else:
                rows.append(("fold", (1, f.function)))
        else:
            rows.append(("frame", f))
        prev = f
    return [("gap", f"{v[0]} more frames of {v[1]} (recursion)") if k == "fold" else (k, v) for k, v in rows]


def register(app) -> None:
    app.jinja_env.filters.update(when=when, ago=ago, sparkline=sparkline, hexaddr=hexaddr, fold=fold)
    app.jinja_env.globals.update(python_status=python_status)
