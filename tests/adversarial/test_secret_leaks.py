"""Secret leaks: a password, token or key a process had in its command line
or environment must never reach anyone who reads the crash, whatever way it
was spelled (SECURITY.md: a viewer, a local user reading syslog).

A real program is crashed through the real kernel pipe handler with every
spelling of issue 8's finding 9 in its argv (so also in the core's own psargs
note) and its environment, and collected by the real collector; then the
secret values must appear nowhere: meta.json, the database file's bytes, the
CLI's show and export, the JSON API, the exports and the crash page from the
real web server over HTTP, and the handler's syslog line. The core itself
holds the process's memory and so the secrets: it is root-only, and out of
this test. A second test stores a crash as an older version did, unmasked,
and reads it back through the same doors.
"""

from __future__ import annotations

import html.parser
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

import crashkit
from collector.corepattern import pattern_lock
from test_handler import syslog  # noqa: F401  (a fixture: /dev/log, or the journal)
from analyzer.secrets import DEFAULT_SECRET_NAMES
from waiting import wait_for
from webserver import add_user, cli, web_server

# argv[0] names the program: the secret-carrying options of mysql and curl
# count only after such a word. Each command line fits the core's 80-byte
# psargs note, so the note holds every secret of its crash too.
CRASHES = [
    ["mysql", "-pLEAKmysqlattached", "--password", "LEAKlongoption", "SECRET_TOKEN=LEAKpair"],
    ["curl", "-u", "alice:LEAKcurlpw", "-H", "Authorization: Bearer LEAKbearerarg"],
    ["git", "https://LEAKurltoken@github.com/o/r", '{"password": "LEAKjsonarg"}'],
    ["app", "CARD_PIN=LEAKpin", "--pin", "LEAKpinoption"],  # a name only this host's collector.toml holds
]
ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "MYSQL_PWD": "LEAKmysqlpwd",
    "SMTP_PASS": "LEAKunderpass",
    "MYSQL_OPTS": "--user=root -pLEAKenvattached",
    "JAVA_TOOL_OPTIONS": "-Dx=1 --password LEAKenvlongoption",
    "CURL_COMMAND": "curl -u bob:LEAKenvcurl https://h/",
    "UPSTREAM_HEADERS": "Accept: */*; Authorization: Bearer LEAKenvbearer",
    "REPO_URL": "https://LEAKenvurltoken@github.com/o/r",
    "APP_CONFIG": '{"db": {"host": "db", "password": "LEAKenvjson"}}',
    "CARD_PIN": "LEAKpinenv",
}
HOST_NAMES = (*DEFAULT_SECRET_NAMES, "*PIN*")  # collector.toml's secret_names
MARK = "LEAK"  # every secret value starts with it; nothing else here does
USER, PASSWORD = "viewer1", "a viewer's own password"


def _secrets_in(text: str) -> list[str]:
    return sorted(set(re.findall(MARK + r"[A-Za-z]+", text)))


class _Csrf(html.parser.HTMLParser):
    token: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrf_token":
            self.token = a.get("value")


def _viewer(base: str, data: Path):
    """(a browser session logged in as a viewer, an API token of the same viewer)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    form = _Csrf()
    form.feed(opener.open(base + "/login", timeout=10).read().decode())
    body = urllib.parse.urlencode({"username": USER, "password": PASSWORD, "csrf_token": form.token}).encode()
    assert "/login" not in opener.open(base + "/login", data=body, timeout=10).url, "the viewer could not log in"
    token = re.search(r"ct_[\w-]+", cli(data, "token", "add", USER))[0]
    return opener, token


def _everything_a_viewer_reads(data: Path, crash_ids: list[str], group_refs: list[str]) -> dict[str, str]:
    """Every way a crash is shown, by name: the CLI, and the web server over HTTP."""
    shown: dict[str, str] = {}
    for ref in crash_ids + group_refs:
        shown[f"show {ref}"] = cli(data, "show", ref)
        shown[f"show --json {ref}"] = cli(data, "show", ref, "--json")
        for fmt in ("text", "markdown", "json"):
            shown[f"export {ref} {fmt}"] = cli(data, "export", ref, "--format", fmt)
    add_user(data, USER, "viewer", PASSWORD)
    with web_server(data, data / "web.log") as base:
        browser, token = _viewer(base, data)

        def api(path: str) -> str:
            request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200, path
                return answer.read().decode()

        def page(path: str) -> str:
            with browser.open(base + path, timeout=10) as answer:
                assert answer.status == 200 and "/login" not in answer.url, path
                return answer.read().decode()

        for ref in crash_ids:
            shown[f"page /crashes/{ref}"] = page(f"/crashes/{ref}")
            shown[f"api crash {ref}"] = api(f"/api/v1/crashes/{ref}")
        for ref in crash_ids + group_refs:
            for fmt in ("text", "markdown", "json"):
                shown[f"page export {ref} {fmt}"] = page(f"/export/{ref}?format={fmt}")
                shown[f"api export {ref} {fmt}"] = api(f"/api/v1/export/{ref}?format={fmt}")
        for ref in group_refs:
            shown[f"api group {ref}"] = api(f"/api/v1/groups/{ref}")
            shown[f"page group {ref}"] = page(f"/groups/{ref[1:]}")
        shown["api groups"] = api("/api/v1/groups")
    return shown


def test_no_spelling_of_a_secret_reaches_a_reader(collector_installed, syslog, tmp_path):  # noqa: F811
    from collecting import collecting

    data = collector_installed
    (data / "collector.toml").write_text(f"secret_names = {json.dumps(HOST_NAMES)}\n")
    exe = crashkit.compile_c("segv.c", tmp_path / "segv")
    pids = []
    for argv in CRASHES:
        proc = subprocess.Popen(argv, executable=exe, env=ENVIRONMENT, preexec_fn=crashkit.allow_cores,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.wait(timeout=60) == -11
        pids.append(proc.pid)

    # the handler's bundles (the machine's other crashes land here too: ours
    # are known by their pids), and its syslog lines
    spool = data / "spool"

    def ours() -> dict[str, str]:
        texts = {m.parent.name: m.read_text() for m in spool.glob("*/meta.json")}
        return {bid: text for bid, text in texts.items() if json.loads(text)["pid"] in pids}

    bundles = wait_for(lambda: (b := ours()) and len(b) == len(CRASHES) and b, "a bundle for every crash", 60)
    lines = [syslog.wait_for(f"pid {pid} ") for pid in pids]
    for pid, line in zip(pids, lines):
        assert "kept in" in line, line

    # the collector (embedded analysis) ingests them
    def stored():
        return [c for g in store.groups() for c in store.crashes_of(g.id) if c.meta.get("pid") in pids]

    with collecting(data, join_timeout=30) as (_, store):
        crashes = wait_for(lambda: (c := stored()) and len(c) == len(CRASHES) and c, "every crash stored", 180)
    groups = sorted({c.group_ref for c in crashes})
    store.close()

    found = {f"meta.json {bid}": _secrets_in(text) for bid, text in bundles.items()}
    found.update({f"syslog: {line}": _secrets_in(line) for line in lines})
    database = b"".join(p.read_bytes() for p in data.glob("coretriage.db*"))
    assert database, "no database file"
    found["database file"] = _secrets_in(database.decode("latin-1"))
    shown = _everything_a_viewer_reads(data, [c.id for c in crashes], groups)
    found.update({what: _secrets_in(text) for what, text in shown.items()})
    assert not {what: s for what, s in found.items() if s}

    # masked, not lost: the rest of each line is still there
    for text in bundles.values():
        meta = json.loads(text)
        assert meta["cmdline"] in _masked_forms() and set(meta["environ"]) == set(ENVIRONMENT)
    # the core's psargs note holds the same command line, masked the same way
    command_lines = sorted(c.analysis["command_line"] for c in crashes)
    assert command_lines == sorted(" ".join(c) for c in _masked_forms()), command_lines


def _masked_forms() -> list[list[str]]:
    """CRASHES as they may be shown."""
    return [
        ["mysql", "-p***", "--password", "***", "SECRET_TOKEN=***"],
        ["curl", "-u", "alice:***", "-H", "Authorization: Bearer ***"],
        ["git", "https://***@github.com/o/r", '{"password": "***"}'],
        ["app", "CARD_PIN=***", "--pin", "***"],
    ]


# ---- a crash an older version stored unmasked ----

OLD_COMMAND_LINE = "./livecrash SECRET_TOKEN=LEAKold --password LEAKoldlong https://LEAKoldurl@h/"
OLD_META = {
    "cmdline": ["mysql", "-pLEAKoldmysql", "-H", "Authorization: Bearer LEAKoldbearer",
                "https://LEAKoldurl@github.com/o/r"],
    "environ": {"PATH": "/usr/bin", "MYSQL_PWD": "LEAKoldpwd", "DB_PASS": "LEAKoldpass",
                "APP_CONFIG": '{"password": "LEAKoldjson"}'},
    "problems": ["nothing secret"],
}


def test_a_crash_stored_unmasked_is_masked_on_the_way_out(tmp_path):
    """As an older version stored it: the psargs note and the metadata as the
    process had them. Every reader must see them masked."""
    from analyzer.model import Analysis
    from analyzer.signature import generate
    from coretriage.config import load_config
    from coretriage.ingest import analyzed
    from coretriage.records import CrashRecord
    from coretriage.store import Store

    data = tmp_path / "data"
    data.mkdir()
    config = load_config(data)
    store = Store(config.database_url)
    analysis = Analysis(core="", executable="/srv/livecrash", command_line=OLD_COMMAND_LINE, pid=4242)
    row, _ = store.add_crash(CrashRecord(id="c00000000beef", crashed_at=time.time(),
                                         analyzed=analyzed(analysis, generate(analysis)), meta=OLD_META))
    store.close()
    assert MARK.encode() in (data / "coretriage.db").read_bytes()  # stored as an old version would have

    shown = _everything_a_viewer_reads(data, [row.id], [row.group_ref])
    leaks = {what: _secrets_in(text) for what, text in shown.items() if _secrets_in(text)}
    assert not leaks
    assert "./livecrash SECRET_TOKEN=*** --password *** https://***@h/" in shown[f"export {row.id} text"]


# ---- the syslog line's last resort ----

@pytest.fixture
def one_at_a_time():
    """The tests that bind /dev/log do so holding the core_pattern lock."""
    with pattern_lock():
        yield


def test_the_handlers_last_resort_line_is_masked(one_at_a_time, syslog):  # noqa: F811
    """``handler failed: <exception>`` quotes whatever the exception says,
    and an exception can quote what the crashed process handed over."""
    from collector.logline import log, safe

    error = ValueError("bad header 'Authorization: Bearer LEAKlogbearer' in https://LEAKlogurl@h/ password=LEAKlog")
    log("LOG_ERR", f"handler failed: {type(error).__name__}: {safe(error)}; 0 more bytes discarded")
    line = syslog.wait_for("handler failed: ValueError")
    assert not _secrets_in(line), line
    assert "Bearer ***" in line and "https://***@h/" in line and "password=***" in line
