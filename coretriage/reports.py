"""Backtrace reports for a crash or a group, ready to paste into a bug
tracker: text, markdown or JSON. Pure: rows in, a string out. Every crash
is masked as it is read (``coretriage.masking``) with ``secret_names``, the
host's list when the caller knows it: a row stored unmasked by an older
version does not leak."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from analyzer.mixed import pair
from analyzer.model import Analysis, Frame
from analyzer.secrets import DEFAULT_SECRET_NAMES
from coretriage.masking import masked_row
from coretriage.records import CrashRow, GroupRow

FORMATS = ("text", "markdown", "json")
OTHER_THREAD_FRAMES = 12


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def crash_json(row: CrashRow, secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES) -> dict:
    row = masked_row(row, secret_names)
    sig = row.signature
    kind, size, _ = core_kind(row)
    # through the model: analyses stored before problems had codes read the same as new ones
    analysis = Analysis.from_dict(row.analysis)
    mixed = analysis.mixed().crashing_thread
    return {
        "crash_id": row.id, "group_id": row.group_ref, "signature": sig.get("text"),
        "signature_quality": sig.get("quality"), "key_frames": key_frame_list(row),
        "signal": (row.analysis.get("signal") or {}).get("name"),
        "crashed_at": row.crashed_at, "ingested_at": row.ingested_at,
        "executable": row.executable, "host": row.host, "container": row.container, "image": row.image,
        "core_file": row.core_file, "core_kind": kind, "core_size": size, "meta": row.meta,
        "signature_details": sig, "analysis": analysis.to_dict(),
        "rules_version": row.rules_version, "os": os_release_text(row),
        # the crashing thread with its Python frames in place of the eval loop's
        # (the native frames are in "analysis"; its "python" holds every thread's Python stack)
        "mixed_stack": [_frame_json(f) for f in (mixed.frames if mixed else ())],
    }


def core_kind(row: CrashRow) -> tuple[str, int, str | None]:
    """(``full``, ``stack`` or ``none``; the kept core's uncompressed size;
    why it is not the full core). Crashes stored before stack cores: full
    when they have a core."""
    meta = row.meta if isinstance(row.meta, dict) else {}
    kind = meta.get("core_kind")
    if kind not in ("full", "stack", "none"):
        kind = "full" if row.core_file else "none"
    size = meta.get("core_size") if kind != "none" else 0
    size = size if isinstance(size, int) and not isinstance(size, bool) else 0
    why = meta.get("core_kind_reason") if kind != "full" else None
    if kind == "none" and not why:
        why = meta.get("dropped") or "no core kept"
    return kind, size, why if isinstance(why, str) else None


def key_frame_list(row: CrashRow) -> list[dict]:
    analysis = Analysis.from_dict(row.analysis)
    thread = analysis.mixed().crashing_thread  # key frames index the mixed stack
    wanted = set(row.signature.get("key_frames") or ())
    if thread is None:
        return []
    return [_frame_json(f) for f in thread.frames if f.index in wanted]


def _frame_json(f: Frame) -> dict:
    return {"index": f.index, "function": f.function, "module": f.module, "offset": f.offset,
            "build_id": f.build_id, "file": f.file, "line": f.line, "pc": f.pc,
            "unavailable": list(f.unavailable), "python": f.python,
            # arguments and locals (masked); only an admin's rows still have them (coretriage.access)
            "locals": dict(f.locals)}


def _summary(row: CrashRow, a: Analysis) -> list[tuple[str, str]]:
    lines = [("Crash", row.id), ("Group", row.group_ref), ("Signature", row.signature.get("text", "")),
             ("Signal", a.signal.describe() if a.signal else "-"),
             ("Architecture", a.architecture or "-"),
             ("Executable", a.executable or "-"), ("Command line", a.command_line or "-"),
             ("PID", str(a.pid or "-")), ("C library", a.libc or "-"), ("Crashed at", when(row.crashed_at))]
    for key, label in (("host", "Host"), ("container", "Container"), ("image", "Image")):
        if getattr(row, key):
            lines.append((label, getattr(row, key)))
    if os_release_text(row):
        lines.append(("OS", os_release_text(row)))
    if a.abort_message:
        lines.append(("Abort message", a.abort_message))
    if a.assertion:
        lines.append(("Assertion", a.assertion))
    if a.exception:
        lines.append(("Exception", a.exception.describe()))
    if a.recursion:
        lines.append(("Recursion", f"{' > '.join(a.recursion.cycle)} x{a.recursion.repeats}, "
                                   f"{a.recursion.depth_text}"))
    for ctx in a.context:
        for k, v in ctx.fields:
            lines.append((f"{ctx.program} {k}", v))
    if a.python is not None:
        lines.append(("Python", f"{a.python.version or '?'} ({a.python.interpreter}), "
                                f"{len(a.python.threads)} thread(s) with Python frames"))
    if a.modules_without_symbols:
        lines.append(("No symbols", ", ".join(a.modules_without_symbols)))
    for p in a.problems:
        lines.append(("Problem", p))
    return lines


def python_status(a: Analysis, t) -> str:
    """" [Python, has the GIL]" for a thread that ran Python, as PyStack says it."""
    py = pair(a.threads, a.python).get(t.number) if a.python else None
    if py is None:
        return ""
    words = ["Python"] + (["has the GIL"] if py.holds_gil else []) + (["collecting garbage"] if py.gc_collecting else [])
    return f" [{', '.join(words)}]"


def _thread_lines(a: Analysis, key: set[int], all_frames: bool) -> list[str]:
    out = []
    for t in a.threads:
        title = f"Thread {t.number}" + (f" (LWP {t.lwp})" if t.lwp else "") + (" - crashed" if t.crashed else "")
        title += python_status(a, t)
        out.append(title + ":")
        frames = t.frames if (t.crashed or all_frames) else t.frames[:OTHER_THREAD_FRAMES]
        prev = None
        for f in frames:
            if prev is not None and f.index != prev + 1:
                out.append(f"     ... {f.index - prev - 1} frames omitted ...")
            mark = "*" if t.crashed and f.index in key else " "
            out.append(f"  {mark}{f.describe()}")
            out.extend(f"         {name} = {value}" for name, value in f.locals)
            prev = f.index
        if len(frames) < len(t.frames) or t.truncated:
            more = (t.depth or len(t.frames)) - (prev + 1 if prev is not None else 0)
            out.append(f"     ... {'at least ' if t.depth_is_minimum else ''}{more} more frames")
        out.append("")
    return out


def crash_report(row: CrashRow, fmt: str = "text", secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES) -> str:
    if fmt == "json":
        return json.dumps(crash_json(row, secret_names), indent=2)
    a = Analysis.from_dict(masked_row(row, secret_names).analysis).mixed()
    key = set(row.signature.get("key_frames") or ())
    summary = _summary(row, a)
    threads = _thread_lines(a, key, all_frames=False)
    if fmt == "markdown":
        md = [f"### Crash `{row.id}`: `{row.signature.get('text', '')}`", ""]
        md += [f"- **{k}**: `{v}`" if k in ("Signature", "Executable", "Command line") else f"- **{k}**: {v}"
               for k, v in summary]
        md += ["", "Key frames are marked with `*`.", "", "```", *threads, "```"]
        return "\n".join(md)
    width = max(len(k) for k, _ in summary)
    text = [f"{k:<{width}} : {v}" for k, v in summary]
    return "\n".join(text + ["", "Backtrace (key frames marked *):", *threads])


def group_json(group: GroupRow, rows: list[CrashRow], secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES) -> dict:
    return {"group_id": group.ref, "signature": group.signature, "executable": group.executable,
            "signal": group.signal, "count": group.count, "first_seen": group.first_seen,
            "last_seen": group.last_seen, "state": group.state, "note": group.note,
            "quality": group.quality, "renamed_from": group.renamed_from, "renamed_at": group.renamed_at,
            "crashes": [{"crash_id": r.id, "crashed_at": r.crashed_at, "host": r.host,
                         "container": r.container, "image": r.image} for r in rows],
            "representative": crash_json(rows[0], secret_names) if rows else None}


def os_release_text(row: CrashRow) -> str | None:
    """The crashed root's distribution (its os-release, from the bundle)."""
    from collector.osrelease import describe

    meta = row.meta if isinstance(row.meta, dict) else {}
    return describe(meta.get("os_release"))


def renamed_text(group: GroupRow) -> str | None:
    """"symbols arrived on DATE: renamed from OLD" (coretriage.resymbol)."""
    if not group.renamed_from or not group.renamed_at:
        return None
    return f"symbols arrived on {when(group.renamed_at)}: renamed from {group.renamed_from}"


def group_report(group: GroupRow, rows: list[CrashRow], fmt: str = "text",
                 secret_names: tuple[str, ...] = DEFAULT_SECRET_NAMES) -> str:
    if fmt == "json":
        return json.dumps(group_json(group, rows, secret_names), indent=2)
    head = [("Group", group.ref), ("Signature", group.signature), ("Executable", group.executable or "-"),
            ("Signal", group.signal or "-"), ("Crashes", str(group.count)),
            ("First seen", when(group.first_seen)), ("Last seen", when(group.last_seen)),
            ("State", group.state + (f" ({group.note})" if group.note else ""))]
    if renamed_text(group):
        head.append(("Symbols", renamed_text(group)))
    example = crash_report(rows[0], fmt, secret_names) if rows else "(no crashes)"
    listing = [f"{r.id}  {when(r.crashed_at)}  {r.host or ''} {r.container or ''}".rstrip() for r in rows[:50]]
    if fmt == "markdown":
        md = [f"## Crash group {group.ref}: `{group.signature}`", ""]
        md += [f"- **{k}**: {v}" for k, v in head[2:]]
        md += ["", "#### Most recent crash", "", example, "", "#### Crashes", "", "```", *listing, "```"]
        return "\n".join(md)
    width = max(len(k) for k, _ in head)
    text = [f"{k:<{width}} : {v}" for k, v in head]
    return "\n".join(text + ["", "Most recent crash:", "", example, "Crashes:", *listing])
