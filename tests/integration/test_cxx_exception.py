"""An uncaught C++ exception (issue 11, part 7): its type, and for the
standard classes and those derived from them its what() text, read from the
exception object in the core (no function is called on a core)."""

import json
import signal
import sys
from pathlib import Path

import pytest

from analyzer.analyze import analyze_core
from coretriage.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sample-cores"))
import crashkit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KINDS = {
    "custom": ("PaymentDeclined", "payment declined: card expired"),  # derived from std::runtime_error
    "bad_alloc": ("std::bad_alloc", "std::bad_alloc"),
    "rethrow": ("std::invalid_argument", "order id must be numeric"),  # a dependent exception
    "int": ("int", None),
    "plain": ("Plain", None),
}


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    exe = tmp_path_factory.mktemp("cxx") / "exceptions"
    return crashkit.compile_c("exceptions.cpp", exe, cc="g++")


@pytest.mark.parametrize("kind", KINDS)
def test_uncaught_exception_type_and_what(program, tmp_path, kind):
    core = crashkit.crash([str(program), kind], tmp_path / "cores", expect_signal=signal.SIGABRT)
    a = analyze_core(core, program)
    assert a.exception is not None, a.problems
    assert (a.exception.type, a.exception.what) == KINDS[kind]


def test_shown_in_exports_and_json(analyzed, tmp_path, capsys):
    sample, _, _ = analyzed("cxx_exception")
    assert main(["--data-dir", str(tmp_path), "ingest", str(sample.core), "--exe", str(sample.exe), "--json"]) == 0
    crash_id = json.loads(capsys.readouterr().out)["crash_id"]
    assert main(["--data-dir", str(tmp_path), "export", crash_id, "--format", "text"]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if l.startswith("Exception"))
    assert line.split(":", 1)[1].strip() == "std::out_of_range: no such account: 7"
    assert main(["--data-dir", str(tmp_path), "export", crash_id, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["analysis"]["exception"] == {
        "type": "std::out_of_range", "what": "no such account: 7"}


def test_a_message_holding_a_password_is_masked(program, tmp_path):
    core = crashkit.crash([str(program), "secret"], tmp_path / "cores", expect_signal=signal.SIGABRT)
    what = analyze_core(core, program).exception.what
    assert what.startswith("connect failed: postgres://") and "hunter2" not in what


def test_no_exception_for_other_crashes(analyzed):
    _, a, _ = analyzed("segv")
    assert a.exception is None
