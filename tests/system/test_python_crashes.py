"""Python processes that segfault in native code (python3, a C extension,
uwsgi behind nginx, gunicorn, Celery, a program embedding libpython),
crashed for real through the kernel's pipe handler: the analysis reads
their Python stacks (PyStack), the crash page on the real web server shows
the Python frames with their files and lines, the text export shows them as
a traceback does, and the signature is named by the Python function that
made the crashing call."""

import html
import json
import re
import time

from handlerkit import crash
from hostfixtures import cli
from pythoncrash import (EXTENSION_APP, JOBS_APP, PYTHON, QUOTES_APP, REPORT_APP, SERVICE_PYTHON, WSGI_APP,
                         build_embedder, build_extension, celery_worker, collect, gunicorn_served, ours, request,
                         send_task, served, write)
from recipes.python import INVOICES, PAYMENTS, line_of
from webclient import Client
from webserver import add_user, web_server

CTYPES_INIT = "/usr/lib/python3.11/ctypes/__init__.py"


def _groups(store):
    """{signature: [crash rows]} of our programs' crashes"""
    out = {}
    for row in ours(store):
        out.setdefault(row.signature["text"], []).append(row)
    return out


def _page(data_dir, tmp_path, crash_id, group_id=None):
    """The crash page and the API's crash on the real web server; with a
    group id, the group page too, whose latest crash shares the crash's
    two innermost Python frames."""
    add_user(data_dir, "viewer", "viewer", "correct horse battery")
    with web_server(data_dir, tmp_path / "web.log") as base:
        client = Client(base)
        assert client.login("viewer", "correct horse battery").status in (302, 303)
        page = client.get(f"/crashes/{crash_id}")
        api = client.get(f"/api/v1/crashes/{crash_id}")
        group = client.get(f"/groups/{group_id}") if group_id is not None else None
    assert page.status == 200 and api.status == 200
    if group is not None:
        assert group.status == 200
        for f in [f for f in api.json()["mixed_stack"] if f["python"]][:2]:
            assert f"{f['file']}:{f['line']}" in html.unescape(group.text)
    return html.unescape(page.text), api.json()


def test_ctypes_crashes_group_by_python_function(collector_installed, tmp_path):
    data = collector_installed
    app = write(tmp_path, "invoices.py", INVOICES)

    def crashes():
        for kind in ("invoice", "batch", "receipt"):
            crash([PYTHON, str(app), kind], cwd=tmp_path)

    store = collect(data, 3, crashes)
    groups = _groups(store)
    # load_invoice from handle_request and from batch_job: one group; load_receipt: another
    assert sorted(groups) == ["strlen | ctypes.string_at | invoices.load_invoice",
                              "strlen | ctypes.string_at | invoices.load_receipt"], sorted(groups)
    invoice = groups["strlen | ctypes.string_at | invoices.load_invoice"]
    assert len(invoice) == 2

    crash_id = invoice[0].id
    text = cli(data, "export", crash_id, "--format", "text").stdout
    string_at = f'File "{CTYPES_INIT}", line '
    assert string_at in text and ", in string_at" in text
    assert f'File "{app}", line {line_of(INVOICES, "return ctypes.string_at(n)")}, in load_invoice' in text
    assert re.search(r"Thread 1 \(LWP \d+\) - crashed \[Python, has the GIL\]", text), text
    assert "_PyEval_EvalFrameDefault" not in text  # replaced by the frames that ran there
    markdown = cli(data, "export", crash_id, "--format", "markdown").stdout
    assert f'File "{app}", line {line_of(INVOICES, "return ctypes.string_at(n)")}, in load_invoice' in markdown
    exported = json.loads(cli(data, "export", crash_id, "--format", "json").stdout)
    assert [f["function"] for f in exported["mixed_stack"] if f["python"]][:2] == ["string_at", "load_invoice"]

    page, api = _page(data, tmp_path, crash_id, invoice[0].group_id)
    assert "load_invoice" in page and str(app) in page and "has the GIL" in page
    assert f"{app}:{line_of(INVOICES, 'return ctypes.string_at(n)')}" in page
    assert f"{CTYPES_INIT}:" in page
    assert api["analysis"]["python"]["version"] == "3.11"
    python_frames = [f for f in api["mixed_stack"] if f["python"]]
    assert [f["function"] for f in python_frames][:2] == ["string_at", "load_invoice"]
    assert python_frames[1]["file"] == str(app)
    assert python_frames[1]["line"] == line_of(INVOICES, "return ctypes.string_at(n)")


def test_faulthandler_is_seen_through(collector_installed, tmp_path):
    """``python3 -X faulthandler``: its handler prints the traceback and
    raises SIGSEGV again; the analysis reports the fault it caught (address
    0, SEGV_MAPERR) and the crash groups with the same crash without it."""
    data = collector_installed
    app = write(tmp_path, "invoices.py", INVOICES)
    store = collect(data, 1, lambda: crash([PYTHON, "-X", "faulthandler", str(app), "invoice"], cwd=tmp_path))
    (row,) = ours(store)
    assert row.signature["text"] == "strlen | ctypes.string_at | invoices.load_invoice"
    analysis = json.loads(cli(data, "show", row.id, "--json").stdout)["analysis"]
    assert analysis["signal"]["name"] == "SIGSEGV" and analysis["signal"]["code_name"] == "SEGV_MAPERR"
    assert analysis["signal"]["fault_address"] == 0
    reraised = analysis["signal"]["reraised"]
    assert reraised["name"] == "SIGSEGV" and reraised["code_name"] == "SI_TKILL"  # by faulthandler, after
    text = cli(data, "export", row.id, "--format", "text").stdout
    assert f'File "{app}", line {line_of(INVOICES, "return ctypes.string_at(n)")}, in load_invoice' in text


def test_c_extension_crash_names_the_python_caller(collector_installed, tmp_path):
    data = collector_installed
    build_extension(tmp_path)
    app = write(tmp_path, "shop.py", EXTENSION_APP)

    store = collect(data, 1, lambda: crash([PYTHON, str(app), str(tmp_path)], cwd=tmp_path))
    groups = _groups(store)
    assert list(groups) == ["invoice_total | shop.render_invoice"], list(groups)
    crash_id = groups["invoice_total | shop.render_invoice"][0].id

    shown = json.loads(cli(data, "show", crash_id, "--json").stdout)
    assert not shown["analysis"]["problems"], shown["analysis"]["problems"]
    assert shown["analysis"]["signal"]["name"] == "SIGSEGV"
    assert shown["analysis"]["signal"]["fault_address"] == 0x10
    text = cli(data, "export", crash_id, "--format", "text").stdout
    line = line_of(EXTENSION_APP, "return billing.invoice_total()")
    assert f'File "{app}", line {line}, in render_invoice' in text
    assert f'File "{app}", line {line_of(EXTENSION_APP, "    render_invoice()")}, in main' in text

    page, _ = _page(data, tmp_path, crash_id)
    assert "invoice_total" in page and "render_invoice" in page and f"{app}:{line}" in page


def test_locals_for_admins_only_and_masked(collector_installed, tmp_path):
    """``python_locals = true``: the crashing frame's arguments and locals,
    masked like the environment, on an admin's crash page, API and export;
    a viewer sees the frames without them."""
    data = collector_installed
    (data / "coretriage.toml").open("a").write("\npython_locals = true\n")
    app = write(tmp_path, "payments.py", PAYMENTS)
    store = collect(data, 1, lambda: crash([PYTHON, str(app)], cwd=tmp_path))
    (row,) = ours(store)
    assert row.signature["text"] == "strlen | ctypes.string_at | payments.charge"
    text = cli(data, "export", row.id, "--format", "text").stdout
    line = line_of(PAYMENTS, "return ctypes.string_at(0)")
    frame = f'File "{app}", line {line}, in charge\n'
    assert frame in text, text
    below = text.split(frame, 1)[1].splitlines()[:4]  # under the frame, one line each
    assert sorted(below) == sorted(["         amount = 1250", "         card_token = ***", '         customer = "acme"',
                                    '         dsn = "postgres://billing:***@db/invoices"']), below
    assert "card_token = ***" in text and 'dsn = "postgres://billing:***@db/invoices"' in text
    assert 'customer = "acme"' in text and "hunter2" not in text and "tok_live" not in text

    add_user(data, "admin", "admin", "correct horse battery")
    add_user(data, "viewer", "viewer", "correct horse battery")
    seen = {}
    with web_server(data, tmp_path / "web.log") as base:
        for user in ("admin", "viewer"):
            client = Client(base)
            assert client.login(user, "correct horse battery").status in (302, 303)
            page, api = client.get(f"/crashes/{row.id}"), client.get(f"/api/v1/crashes/{row.id}")
            export = client.get(f"/export/{row.id}?format=markdown")
            assert page.status == api.status == export.status == 200
            seen[user] = html.unescape(page.text), api.json(), export.text
    page, api, export = seen["admin"]
    assert 'customer = "acme"' in page and "card_token = ***" in page and "hunter2" not in page
    charge = next(f for f in api["mixed_stack"] if f["function"] == "charge")
    assert charge["locals"]["card_token"] == "***" and charge["locals"]["customer"] == '"acme"'
    assert 'customer = "acme"' in export
    for page, api, export in [seen["viewer"]]:
        assert f"{app}:{line}" in page and "charge" in page  # the frames, not what they held
        for shown in (page, json.dumps(api), export):
            assert "acme" not in shown and "card_token" not in shown and "postgres://" not in shown


def _crash_by_request(data_dir, serving, path):
    """While the collector runs: ``/`` then ``path`` of the web service
    ``serving`` (a context manager yielding its base URL), which crashes it;
    the store and the two HTTP statuses."""
    statuses = []

    def crashes():
        with serving as base:
            statuses.append(request(base + "/"))
            statuses.append(request(base + path))

    return collect(data_dir, 1, crashes), statuses


def test_uwsgi_worker_behind_nginx(collector_installed, tmp_path):
    """Seed 004's stack: nginx -> uwsgi_pass -> a uwsgi worker (python3
    plugin, --use-abort) whose WSGI app calls the extension on one URL."""
    data = collector_installed
    store, statuses = _crash_by_request(data, served(tmp_path), "/invoice/crash")
    assert statuses == [200, 502]
    groups = _groups(store)
    assert list(groups) == ["invoice_total | wsgiapp.render_invoice"], list(groups)
    crash_id = groups["invoice_total | wsgiapp.render_invoice"][0].id
    analysis = json.loads(cli(data, "show", crash_id, "--json").stdout)["analysis"]
    # through uwsgi's SIGSEGV handler and its abort() to the fault itself
    assert analysis["signal"]["name"] == "SIGSEGV" and analysis["signal"]["code_name"] == "SEGV_MAPERR"
    assert analysis["signal"]["fault_address"] == 0x10
    assert analysis["signal"]["reraised"]["name"] == "SIGABRT"
    assert not analysis["problems"], analysis["problems"]
    text = cli(data, "export", crash_id, "--format", "text").stdout
    app = tmp_path / "wsgiapp.py"
    line = line_of(WSGI_APP, "return billing.invoice_total()")
    assert f'File "{app}", line {line}, in render_invoice' in text
    assert f'File "{app}", line {line_of(WSGI_APP, "        render_invoice(environ)")}, in application' in text
    page, _ = _page(data, tmp_path, crash_id)
    assert f"{app}:{line}" in page and "application" in page
    assert "SIGSEGV (SEGV_MAPERR) at 0x10; re-raised by the program's handler as SIGABRT" in page
    # which worker and which request, from the core's memory; uwsgi's own log says the same
    spawned = re.search(rf"spawned uWSGI worker (\d+) \(pid: {analysis['pid']},", (tmp_path / "uwsgi.log").read_text())
    assert spawned, (tmp_path / "uwsgi.log").read_text()
    context = {k: v for ctx in analysis["context"] if ctx["program"] == "uwsgi" for k, v in ctx["fields"]}
    assert context == {"worker": spawned.group(1), "request": "GET /invoice/crash"}
    assert "uwsgi worker" in page and "GET /invoice/crash" in page


def test_embedded_interpreter(collector_installed, tmp_path):
    """A C program of its own running Python in libpython: an interpreter
    by the module it maps, not by its name."""
    data = collector_installed
    program = build_embedder(tmp_path)
    app = write(tmp_path, "quotes.py", QUOTES_APP)
    store = collect(data, 1, lambda: crash([str(program), str(app)], cwd=tmp_path), also=(str(program),))
    (row,) = ours(store, (str(program),))
    assert row.signature["text"] == "strlen | ctypes.string_at | quotes.price_quote", row.signature["text"]
    analysis = json.loads(cli(data, "show", row.id, "--json").stdout)["analysis"]
    assert analysis["python"]["interpreter"] == "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    assert not analysis["problems"], analysis["problems"]
    _python_crash_shown(data, tmp_path, row.id, app, [
        ("price_quote", line_of(QUOTES_APP, "return ctypes.string_at(n)")),
        ("<module>", line_of(QUOTES_APP, "price_quote(0)"))])
    text = cli(data, "export", row.id, "--format", "text").stdout
    assert re.search(r" main \(quoter\+0x[0-9a-f]+\)", text), text  # the program's own frame below


def _python_crash_shown(data, tmp_path, crash_id, app, frames):
    """The text export and the crash page show ``frames`` ((function,
    line), innermost first) of ``app`` as a traceback does, and the crashing
    thread is the Python thread that had the GIL."""
    text = cli(data, "export", crash_id, "--format", "text").stdout
    assert re.search(r"Thread 1 \(LWP \d+\) - crashed \[Python, has the GIL\]", text), text
    for function, line in frames:
        assert f'File "{app}", line {line}, in {function}' in text, text
    page, api = _page(data, tmp_path, crash_id)
    for function, line in frames:
        assert f"{app}:{line}" in page and function in page
    mine = [(f["function"], f["line"]) for f in api["mixed_stack"] if f["python"] and f["file"] == str(app)]
    assert mine[:len(frames)] == list(frames), mine


def test_gunicorn_worker(collector_installed, tmp_path):
    """A gunicorn sync worker (forked by the arbiter after the interpreter
    started) whose WSGI app crashes in ctypes on one URL."""
    data = collector_installed
    store, statuses = _crash_by_request(data, gunicorn_served(tmp_path), "/report/crash")
    assert statuses == [200, 0]  # the worker died mid-request
    (row,) = ours(store)
    assert row.executable == SERVICE_PYTHON
    # (this CPython has _ctypes' symbols: its C string_at is named, and skipped as Debian's unnamed one is)
    assert row.signature["text"] == "strlen | ctypes.string_at | reportapp.render_report", row.signature["text"]
    app = tmp_path / "reportapp.py"
    _python_crash_shown(data, tmp_path, row.id, app, [
        ("render_report", line_of(REPORT_APP, "return ctypes.string_at(0)")),
        ("application", line_of(REPORT_APP, "        render_report(environ)"))])
    text = cli(data, "export", row.id, "--format", "text").stdout
    assert "/gunicorn/workers/sync.py" in text  # the server's frames below the app's, as they ran


def test_celery_task_in_a_prefork_worker(collector_installed, tmp_path):
    """A Celery task, run in the prefork pool's forked child, crashing in
    ctypes: the task's functions name the group, Celery's and billiard's
    frames are there below them."""
    from redisserver import start_redis
    from servicekit import free_port as redis_port, stop

    data = collector_installed
    port = redis_port()
    redis = start_redis(port)
    broker = f"redis://127.0.0.1:{port}/0"
    try:
        def crashes():
            with celery_worker(tmp_path, broker) as log:
                send_task(tmp_path, broker, "export_ledger", 0)
                deadline = time.monotonic() + 60
                while "SIGSEGV" not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.2)

        store = collect(data, 1, crashes)
    finally:
        stop(redis)
    (row,) = ours(store)
    assert row.executable == SERVICE_PYTHON
    assert row.signature["text"] == "strlen | ctypes.string_at | jobs.build_rows", row.signature["text"]
    app = tmp_path / "jobs.py"
    _python_crash_shown(data, tmp_path, row.id, app, [
        ("build_rows", line_of(JOBS_APP, "return ctypes.string_at(ledger)")),
        ("export_ledger", line_of(JOBS_APP, "return build_rows(ledger)"))])
    text = cli(data, "export", row.id, "--format", "text").stdout
    assert "/celery/app/trace.py" in text and "/billiard/pool.py" in text


def test_doctor_finds_uwsgi_masters_without_use_abort(tmp_path):
    """Real uwsgi masters, use-abort said (or not) on the command line and
    in ini, yaml and xml configs: doctor reports the ones without it, with
    the fix in their config's own syntax."""
    import signal
    import subprocess

    from collector.hostsetup import checks as C
    from collector.hostsetup.doctor import run_checks
    from servicekit import free_port

    write(tmp_path, "wsgiapp.py", "def application(environ, start_response):\n"
                                  "    start_response('200 OK', [])\n    return [b'ok']\n")
    head = ["/usr/bin/uwsgi", "--plugin", "python3", "--master", "--processes", "1", "--wsgi-file", "wsgiapp.py"]
    write(tmp_path, "with-abort.ini", f"[uwsgi]\nplugin = python3\nmaster = true\nprocesses = 1\n"
                                      f"socket = 127.0.0.1:{free_port()}\nwsgi-file = wsgiapp.py\n"
                                      "use-abort = true\n")
    write(tmp_path, "without.yaml", f"uwsgi:\n  socket: 127.0.0.1:{free_port()}\n  master: true\n")
    write(tmp_path, "with-abort.xml", f"<uwsgi>\n  <socket>127.0.0.1:{free_port()}</socket>\n  <use-abort/>\n"
                                      "</uwsgi>\n")
    masters = {  # name: (argv, what doctor says, in the fix)
        "command line without": (head + ["--socket", f"127.0.0.1:{free_port()}"], C.WARN, "`--use-abort`"),
        "command line with": (head + ["--socket", f"127.0.0.1:{free_port()}", "--use-abort"], C.OK, None),
        "ini with": (["/usr/bin/uwsgi", "--ini", "with-abort.ini"], C.OK, None),
        "yaml without": (head + ["--yaml", "without.yaml"], C.WARN, "`use-abort: true` under `uwsgi:` in without.yaml"),
        "xml with": (head + ["--xml", "with-abort.xml"], C.OK, None),
    }
    procs = {name: subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
             for name, (argv, _, _) in masters.items()}
    try:
        deadline = time.monotonic() + 120  # five uwsgi masters starting on a loaded machine
        while True:
            got = {c.name: c for c in run_checks(tmp_path / "data", docker=lambda: [], clock=None)}
            if all(f"uwsgi master {p.pid}" in got for p in procs.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        running = {name: p.poll() is None for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGINT)  # uwsgi reloads on SIGTERM, stops on SIGINT
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert all(running.values()), running  # each config was one uwsgi accepts
    for name, (_, status, fix) in masters.items():
        check = got[f"uwsgi master {procs[name].pid}"]
        assert check.status == status, (name, check)
        if status == C.WARN:
            assert "without use-abort" in check.message and fix in check.fix, (name, check)
    reported = {int(c.split()[-1]) for c in got if c.startswith("uwsgi master ")}
    assert {p.pid for p in procs.values()} <= reported  # the masters; their workers are not masters
