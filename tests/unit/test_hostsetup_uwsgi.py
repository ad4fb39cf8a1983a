"""host-setup doctor and uwsgi masters without use-abort: the pure parsing
of command lines and ini/yaml/xml/json configs, and the check on a fake
/proc (tests/system/test_python_crashes.py runs it on a real uwsgi)."""

import os

import pytest

from builders import make_proc
from collector.hostsetup import checks as C
from collector.hostsetup import uwsgi
from collector.hostsetup.doctor import run_checks


@pytest.mark.parametrize("argv, said", [
    (["uwsgi", "--use-abort"], True),
    (["uwsgi", "--use-abort", "--master"], True),
    (["uwsgi", "--use-abort=true"], True),
    (["uwsgi", "--use-abort", "false"], False),
    (["uwsgi", "--use_abort=0"], False),
    (["uwsgi", "--master"], None),
])
def test_command_line(argv, said):
    assert uwsgi.in_command_line(argv) is said


def test_config_files_named_on_the_command_line():
    argv = ["uwsgi", "--ini", "a.ini", "--yaml=/etc/b.yml", "--xml", "c.xml", "d.ini", "--json", "e.json"]
    assert uwsgi.config_files(argv) == [("ini", "a.ini"), ("yaml", "/etc/b.yml"), ("xml", "c.xml"),
                                        ("ini", "d.ini"), ("json", "e.json")]


@pytest.mark.parametrize("kind, text, said", [
    ("ini", "[uwsgi]\nmaster = true\nuse-abort = true\n", True),
    ("ini", "[uwsgi]\nuse-abort\n", True),
    ("ini", "[uwsgi]\nuse_abort = false\n", False),
    ("ini", "[other]\nuse-abort = true\n[uwsgi]\nmaster = 1\n", None),
    ("yaml", "uwsgi:\n  master: true\n  use-abort: true\n", True),
    ("yaml", "uwsgi:\n  use-abort: 'false'\n", False),
    ("xml", "<uwsgi><master/><use-abort/></uwsgi>", True),
    ("xml", "<uwsgi><use-abort>0</use-abort></uwsgi>", False),
    ("json", '{"uwsgi": {"use-abort": true}}', True),
    ("json", '{"uwsgi": {"master": true}}', None),
])
def test_configs(kind, text, said):
    assert uwsgi.in_config(kind, text) is said


def test_command_line_wins_then_configs_then_environment():
    assert uwsgi.uses_abort(["uwsgi", "--use-abort=0"], {}, [("ini", "[uwsgi]\nuse-abort=1\n")]) is False
    assert uwsgi.uses_abort(["uwsgi"], {"UWSGI_USE_ABORT": "1"}, []) is True
    assert uwsgi.uses_abort(["uwsgi"], {}, []) is False
    assert uwsgi.uses_abort(["uwsgi"], {}, [("ini", None)]) is None  # unreadable: unknown



def test_doctor_reports_masters_not_workers(short_tmp):
    tmp_path = short_tmp
    procs = {400: {"comm": "uwsgi", "cmdline": ["/usr/bin/uwsgi", "--master", "--ini", "app.ini"]},
             401: {"comm": "uwsgi", "cmdline": ["/usr/bin/uwsgi", "--master", "--ini", "app.ini"]},
             500: {"comm": "uwsgi", "cmdline": ["uwsgi", "--use-abort", "--ini", "/etc/other.ini"]}}
    proc = make_proc(tmp_path, processes=procs)
    (proc / "401" / "status").write_text("Name:\tuwsgi\nPPid:\t400\n")  # a worker of 400
    for pid in (400, 500):  # each master's root and working directory
        root = tmp_path / f"root{pid}"
        (root / "srv").mkdir(parents=True)
        os.symlink(root, proc / str(pid) / "root")
        os.symlink("/srv", proc / str(pid) / "cwd")
    (tmp_path / "root400" / "srv" / "app.ini").write_text("[uwsgi]\nmaster = true\n")
    got = {c.name: c for c in run_checks(tmp_path / "data", proc=proc, root=tmp_path, docker=lambda: [],
                                         clock=None)}
    assert got["uwsgi master 400"].status == C.WARN
    assert "without use-abort" in got["uwsgi master 400"].message
    assert "use-abort = true" in got["uwsgi master 400"].fix and "app.ini" in got["uwsgi master 400"].fix
    assert "uwsgi master 401" not in got
    assert got["uwsgi master 500"].status == C.OK


def test_a_config_read_inside_the_masters_root(short_tmp):
    tmp_path = short_tmp
    proc = make_proc(tmp_path, processes={600: {"comm": "uwsgi", "cmdline": ["uwsgi", "app.yaml"]}})
    root = tmp_path / "container"
    (root / "app").mkdir(parents=True)
    (root / "app" / "app.yaml").write_text("uwsgi:\n  use-abort: true\n")
    os.symlink(root, proc / "600" / "root")
    os.symlink("/app", proc / "600" / "cwd")
    assert uwsgi.master_facts(proc, 600)[1] is True
    (root / "app" / "app.yaml").unlink()
    os.symlink("/etc/passwd", root / "app" / "app.yaml")  # never followed
    assert uwsgi.master_facts(proc, 600)[1] is None


@pytest.mark.parametrize("configs, said", [
    ([("ini", "/etc/uwsgi/app.ini")], "`use-abort = true` to the [uwsgi] section of /etc/uwsgi/app.ini"),
    ([("yaml", "app.yml")], "`use-abort: true` under `uwsgi:` in app.yml"),
    ([("ini", "base.ini"), ("xml", "app.xml")], "`<use-abort>true</use-abort>` inside `<uwsgi>` in app.xml"),
    ([("json", "app.json")], '`"use-abort": true` to the "uwsgi" object of app.json'),
    ([], "`--use-abort` to its command line"),
])
def test_the_fix_is_said_in_the_configs_own_syntax(configs, said):
    check = C.uwsgi_check(7, ["uwsgi"], False, configs)
    assert check.status == C.WARN and said in check.fix and "restart uwsgi" in check.fix
