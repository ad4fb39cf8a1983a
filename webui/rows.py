"""The rows of the two long tables, built in Python: the group list's 50
groups and a group page's 200 crashes. Jinja spends microseconds on every
expression it prints, and these rows print about 20 each: at fleet scale
that was most of a page's rendering. Every value is escaped here, as the
templates' autoescape would; the HTML is the templates' own."""

from __future__ import annotations

import time

from markupsafe import Markup, escape

from webui.filters import ago, sparkline, when


def _minutes(ts, memo: dict) -> str:
    """``filters.when``: minutes, so crashes of the same minute share one."""
    if ts is None:
        return "-"
    key = int(float(ts) // 60)
    found = memo.get(key)
    if found is None:
        found = memo[key] = when(ts)
    return found


def _tags(values, kind: str, css: str) -> str:
    return "".join(f'<span class="{css}" title="{kind} {escape(v)}: {n} crashes">{escape(v)}</span>'
                   for v, n in values[:3])


def group_rows(groups, facets: dict, daily: dict, group_url: str) -> Markup:
    """The group list's rows (``groups/list.html``): ``group_url`` is the
    detail page's URL without the id (``groups.url_stem``)."""
    now = time.time()
    memo: dict = {}
    out = []
    for gr in groups:
        f = facets[gr.id]
        state = escape(gr.state)
        href = f"{escape(group_url)}{gr.id}"
        tags = _tags(f.get("host", []), "host", "tag") + _tags(f.get("image", []), "image", "tag image")
        out.append(
            f'<tr class="state-{state}">\n'
            f'  <td><a href="{href}">{gr.ref}</a></td>\n'
            f'  <td class="sig"><a href="{href}">{escape(gr.signature)}</a></td>\n'
            f'  <td><code>{escape(gr.key_frame or "-")}</code></td>\n'
            f'  <td class="path">{escape(gr.executable or "-")}</td>\n'
            f'  <td class="num">{int(gr.count)}</td>\n'
            f'  <td>{tags}{"" if f else "-"}</td>\n'
            f'  <td class="when" title="{_minutes(gr.first_seen, memo)}">{ago(gr.first_seen, now)}</td>\n'
            f'  <td class="when" title="{_minutes(gr.last_seen, memo)}">{ago(gr.last_seen, now)}</td>\n'
            f'  <td>{sparkline(daily[gr.id])}</td>\n'
            f'  <td><span class="state state-{state}">{state}</span></td>\n'
            f'</tr>\n')
    return Markup("".join(out))


def crash_rows(crashes: list[dict], crash_url: str) -> Markup:
    """A group page's crash rows (``groups/detail.html``): ``crash_url`` is
    the crash page's URL without the id."""
    memo: dict = {}
    text: dict = {None: "-", "": "-"}  # a group's crashes share a few hosts, images and architectures

    def shown(value) -> str:
        found = text.get(value)
        if found is None:
            found = text[value] = str(escape(value))
        return found

    base = escape(crash_url)
    out = []
    for c in crashes:
        cid = escape(c["id"])
        out.append(f'<tr><td><a href="{base}{cid}">{cid}</a></td><td>{_minutes(c["crashed_at"], memo)}</td>\n'
                   f'<td>{shown(c["architecture"])}</td><td>{shown(c["host"])}</td>'
                   f'<td>{shown(c["container"])}</td><td>{shown(c["image"])}</td></tr>\n')
    return Markup("".join(out))
