"""analyzer/enrichers/ (haproxy.py, postgres.py) on real servers crashed for real: Debian's HAProxy (and one built with -g) serving an HTTP request
and a PostgreSQL 15 backend running a buggy C function."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from coretriage.ingest import ingest
from coretriage.cli import main


@pytest.fixture(scope="module")
def haproxy_sample(tmp_path_factory):
    from recipes import haproxy
    return haproxy.make(tmp_path_factory.mktemp("haproxy"))


@pytest.fixture(scope="module")
def postgres_sample():
    """Made outside pytest's temp root: the postgres user reaches its files
    through every parent, and any pytest that starts on this machine meanwhile
    makes /tmp/pytest-of-root 0700 again (the server then could not chdir)."""
    from recipes import postgres
    workdir = Path(tempfile.mkdtemp(prefix="ct-pgsample-", dir="/var/tmp"))
    try:
        yield postgres.make(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_haproxy_segfault_while_serving_request(config, store, haproxy_sample):
    done = ingest(config, store, haproxy_sample.core, haproxy_sample.exe)
    a, sig = done.analysis, done.signature
    assert a.signal.name == "SIGSEGV" and a.executable == "/usr/sbin/haproxy"
    assert sig.frames[:2] == ("route_auth_header", "buggy_parse_path")
    assert sig.frames[2].startswith("liblua5.3.so")  # stripped library: module+offset
    assert len(a.threads) >= 2 and a.crashing_thread.crashed
    names = [f.function for f in a.crashing_thread.frames]
    assert "process_stream" in names and "lua_resume" in names  # exported haproxy / Lua names
    ctx = dict(a.context[0].fields)
    assert ctx["version"].startswith("2.") and "USE_LUA=1" in ctx["build_options"]
    assert "/usr/sbin/haproxy" in a.modules_without_symbols


def test_haproxy_same_bug_twice_one_group(config, store, haproxy_sample, tmp_path):
    from recipes import haproxy
    again = haproxy.make(tmp_path / "again")
    first = ingest(config, store, haproxy_sample.core, haproxy_sample.exe)
    second = ingest(config, store, again.core, again.exe)
    assert first.crash.id != second.crash.id
    assert first.crash.group_id == second.crash.group_id


def test_postgres_backend_query_is_recovered_masked(config, store, postgres_sample):
    done = ingest(config, store, postgres_sample.core, postgres_sample.exe)
    a, sig = done.analysis, done.signature
    assert sig.frames[0] == "normalize_sku" and a.signal.name == "SIGSEGV"
    ctx = dict(a.context[0].fields)
    assert ctx["backend_type"] == "client backend"
    assert ctx["version"].startswith("PostgreSQL 15")
    assert "normalize_sku(name)" in ctx["query"]
    assert "secret-literal" not in ctx["query"] and "?" in ctx["query"]


def test_postgres_literals_shown_when_asked(tmp_path, postgres_sample, capsys):
    (tmp_path / "coretriage.toml").write_text("show_literals = true\n")
    assert main(["--data-dir", str(tmp_path), "ingest", str(postgres_sample.core),
                 "--exe", str(postgres_sample.exe), "--json"]) == 0
    crash_id = json.loads(capsys.readouterr().out)["crash_id"]
    assert main(["--data-dir", str(tmp_path), "show", crash_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    fields = dict(shown["analysis"]["context"][0]["fields"])
    assert fields["query"] == postgres_sample.extra["query"]


def test_stack_cores_of_the_servers_give_the_same_backtraces(config, store, haproxy_sample, postgres_sample,
                                                             tmp_path):
    """Their stack-only cores (collector/stackcore.py, what a no_core
    PostgreSQL keeps): the same signature and frames, though the code that
    crashed was opened with dlopen() (a PostgreSQL extension, a Lua module:
    the dynamic linker's list of it is on the heap); the query, whose text
    is on the heap too, is said to be not available, in one line."""
    from builders import stack_core

    for sample in (haproxy_sample, postgres_sample):
        full = ingest(config, store, sample.core, sample.exe)
        stack_file = stack_core(sample.core, tmp_path / f"{full.crash.id}.stack")
        assert stack_file.stat().st_size < sample.core.stat().st_size // 4
        stack = ingest(config, store, stack_file, sample.exe)
        assert stack.signature.text == full.signature.text
        assert stack.crash.group_id == full.crash.group_id
        assert [[f.function for f in t.frames] for t in stack.analysis.threads] == \
            [[f.function for f in t.frames] for t in full.analysis.threads]
        ctx = dict(stack.analysis.context[0].fields)
        if sample is postgres_sample:
            assert ctx["backend_type"] == "client backend"  # a global: kept
            assert ctx["query"].startswith("not available: the memory at 0x") and "\n" not in ctx["query"]
        else:
            assert ctx["version"] == dict(full.analysis.context[0].fields)["version"]


@pytest.fixture(scope="module")
def haproxy_debug_sample(tmp_path_factory):
    """HAProxy built with -g from Debian's source package (cached), crashed
    by the same Lua module while it serves POST /webhook/orders/42."""
    from recipes import haproxy
    return haproxy.make(tmp_path_factory.mktemp("haproxy-g"), haproxy.build_with_debug_info())


def test_haproxy_with_debug_info_shows_the_request_that_crashed_it(tmp_path, haproxy_debug_sample):
    from webclient import Client
    from webserver import add_user, cli, web_server

    data = tmp_path / "data"
    done = json.loads(cli(data, "ingest", str(haproxy_debug_sample.core), "--exe", str(haproxy_debug_sample.exe),
                          "--json"))
    assert done["signature"].startswith("route_auth_header | buggy_parse_path")  # grouped as the stock build is
    add_user(data, "ops", "viewer", "correct horse battery")
    with web_server(data, tmp_path / "web.log") as base:
        client = Client(base)
        assert client.login("ops", "correct horse battery").status == 302
        page = client.get(f"/crashes/{done['crash_id']}")
        assert page.status == 200
        text = page.text
    for shown in ("POST /webhook/orders/42", "web", "127.0.0.1:", "gzip"):
        assert shown in text, shown
    exported = cli(data, "export", done["crash_id"], "--format", "json")
    fields = dict(next(c for c in json.loads(exported)["analysis"]["context"] if c["program"] == "haproxy")["fields"])
    assert fields["request"] == "POST /webhook/orders/42" and fields["host"].startswith("127.0.0.1:")
    assert fields["frontend"] == "web" and fields["client"].startswith("127.0.0.1:")
    # the Lua rule that crashed runs in the frontend, before use_backend picks "orders"
    assert fields["backend"].startswith("not chosen yet")
    assert "gzip" in fields["compression"]


def test_stock_haproxy_says_the_request_needs_debug_info(config, store, haproxy_sample):
    a = ingest(config, store, haproxy_sample.core, haproxy_sample.exe).analysis
    ctx = dict(a.context[0].fields)
    assert ctx["stream"].startswith("not available: haproxy has no debug info")
