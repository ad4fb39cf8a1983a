"""Issue 11, part 10: what the analysis learns of a crash (who sent its
signal and by what name, the fault a crash handler re-raised, the key
frames below that handler, an uncaught C++ exception, a stack overflow's
depth, the crashed root's OS) is in the crash page, in the text, markdown
and JSON exports and in the API, all alike. Real cores, the real web app."""

import html
import json
import os
import re
import signal
import subprocess

import pytest

import crashkit
from analyzer.analyze import DEPTH_CAP
from coretriage.cli import main
from coretriage.ingest import ingest
from coretriage.users import new_token, token_hash
from webclient import viewer_test_client
from webui import create_app

DEBIAN = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}


def _sent_core(exe, cores):
    """The reraise sample's "wait" mode (no handler) killed by this process."""
    with crashkit.cores_into(cores):
        proc = subprocess.Popen([str(exe), "wait"], preexec_fn=crashkit.allow_cores)
        try:
            os.kill(proc.pid, signal.SIGSEGV)
            assert proc.wait(timeout=30) == -signal.SIGSEGV
        finally:
            proc.kill()
        return crashkit.wait_for_core(cores, proc.pid)


@pytest.fixture
def shown(config, store, samples, tmp_path, capsys):
    """crash name -> (its id, {view: text}) for the page, the three exports and the API."""
    ids = {}
    reraise = samples("reraise")
    sender = {"pid": os.getpid(), "uid": os.getuid(), "comm": "supervisord"}
    ids["sent"] = ingest(config, store, _sent_core(reraise.exe, tmp_path / "cores"), reraise.exe,
                         meta={"signal_sender": sender, "os_release": DEBIAN}).crash.id
    for name in ("reraise", "cxx_exception", "recursion"):
        sample = samples(name)
        ids[name] = ingest(config, store, sample.core, sample.exe, meta={"os_release": DEBIAN}).crash.id

    app = create_app({"CORETRIAGE": config, "TESTING": True})
    client = viewer_test_client(app)
    token = new_token()
    app.extensions["store"].add_token("ann", token_hash(token))

    out = {}
    for name, crash_id in ids.items():
        views = {"page": html.unescape(re.sub(r"<[^>]+>", "", client.get(f"/crashes/{crash_id}").text))}
        for fmt in ("text", "markdown", "json"):
            assert main(["--data-dir", str(config.data_dir), "export", crash_id, "--format", fmt]) == 0
            views[fmt] = capsys.readouterr().out
        api = client.get(f"/api/v1/crashes/{crash_id}", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 200
        views["api"] = api.get_json()
        out[name] = crash_id, views
    return out


def _everywhere(views, *texts):
    for view in ("page", "text", "markdown"):
        for text in texts:
            assert text in views[view], (view, text)


def test_the_sender_by_pid_name_and_uid(shown):
    _, views = shown["sent"]
    _everywhere(views, f"SIGSEGV (SI_USER) sent by pid {os.getpid()} (supervisord, uid {os.getuid()})")
    for got in (json.loads(views["json"]), views["api"]):
        sig = got["analysis"]["signal"]
        assert (sig["sender_pid"], sig["sender_uid"], sig["sender_comm"], sig["fault_address"]) == \
            (os.getpid(), os.getuid(), "supervisord", None)
    line = next(l for l in views["text"].splitlines() if l.startswith("Signal"))
    assert " at 0x" not in line


def test_the_reraised_fault_and_the_key_frames_below_the_handler(shown):
    _, views = shown["reraise"]
    _everywhere(views, "SIGSEGV (SEGV_MAPERR) at 0x", "re-raised by the program's handler as SIGSEGV (SI_USER)",
                "(itself, uid")
    for got in (json.loads(views["json"]), views["api"]):
        sig = got["analysis"]["signal"]
        assert sig["code_name"] == "SEGV_MAPERR" and sig["reraised"]["code_name"] == "SI_USER"
        assert got["key_frames"][0]["function"] == "lookup_key" == got["signature"].split(" | ")[0]
        assert "on_crash" not in [f["function"] for f in got["key_frames"]]
    starred = [l for l in views["text"].splitlines() if l.lstrip().startswith("*#")]
    assert "lookup_key" in starred[0] and not any("on_crash" in l for l in starred)


def test_the_uncaught_exception(shown):
    _, views = shown["cxx_exception"]
    _everywhere(views, "std::out_of_range", "no such account: 7")
    for got in (json.loads(views["json"]), views["api"]):
        assert got["analysis"]["exception"] == {"type": "std::out_of_range", "what": "no such account: 7"}


def test_the_stack_overflows_depth(shown):
    _, views = shown["recursion"]
    _everywhere(views, "walk_tree", f"at least {DEPTH_CAP:,} frames")
    for got in (json.loads(views["json"]), views["api"]):
        rec = got["analysis"]["recursion"]
        assert rec["cycle"] == ["walk_tree"] and rec["depth"] == DEPTH_CAP and rec["depth_is_minimum"]


def test_the_crashed_roots_os(shown):
    for name, (_, views) in shown.items():
        _everywhere(views, "Debian GNU/Linux 12 (bookworm)")
        assert json.loads(views["json"])["os"] == views["api"]["os"] == "Debian GNU/Linux 12 (bookworm)", name
