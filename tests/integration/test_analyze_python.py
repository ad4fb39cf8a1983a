"""Real cores of Debian's python3 crashing in native code (ctypes), analyzed
in the sandbox with real gdb and PyStack: the Python stack of every thread,
the mixed stack, the signature, and what stays when PyStack cannot read."""

from __future__ import annotations

import json

import pytest

from analyzer import problems as P
from analyzer.analyze import analyze_core
from analyzer.gdb import GdbBudget
from analyzer.model import Analysis
from analyzer.signature import generate
from builders import stack_core
from recipes import python as recipes
from recipes.python import line_of

CTYPES = "/usr/lib/python3.11/ctypes/__init__.py"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """name -> (Sample, Analysis), each crashed and analyzed once."""
    workdir = tmp_path_factory.mktemp("python-samples")
    cache = {}

    def get(name, variant=0):
        if (name, variant) not in cache:
            sample = recipes.RECIPES[name](workdir, variant)
            cache[name, variant] = sample, analyze_core(sample.core, sample.exe)
        return cache[name, variant]

    return get


def line(sample, needle):
    return line_of(sample.extra["source"], needle)


def test_python_frames_of_a_ctypes_crash(crashed):
    sample, a = crashed("python_ctypes")
    assert not a.problems, a.problems
    assert a.python.version == "3.11" and a.python.interpreter.endswith("python3.11")
    (py,) = a.python.threads
    assert py.tid == a.crashing_thread.lwp and py.holds_gil
    script = sample.extra["script"]
    assert [(f.function, f.file, f.line) for f in py.frames] == [
        ("string_at", CTYPES, 519),
        ("load_invoice", script, line(sample, "def load_invoice") + 1),
        ("handle_request", script, line(sample, "return load_invoice(0)")),
        ("<module>", script, line(sample, "        handle_request(sys.argv[1])")),
    ]
    assert generate(a).text == sample.expected_signature


def test_mixed_stack_replaces_the_eval_loop(crashed):
    _, a = crashed("python_ctypes")
    native = a.crashing_thread.frames
    mixed = a.mixed().crashing_thread.frames
    assert any(f.function == "_PyEval_EvalFrameDefault" for f in native)
    assert not any(f.function == "_PyEval_EvalFrameDefault" for f in mixed)
    assert [f.index for f in mixed] == list(range(len(mixed)))  # numbered as one stack
    python = [f for f in mixed if f.python]
    assert [f.function for f in python] == ["string_at", "load_invoice", "handle_request", "<module>"]
    # the native frames on either side are kept in order
    assert mixed[0].function.startswith("__strlen") and mixed[-1].function == "_start"
    assert python[0].describe().endswith(f'File "{CTYPES}", line 519, in string_at')
    assert a.mixed().mixed() == a.mixed()


def test_analysis_round_trips_through_json(crashed):
    _, a = crashed("python_ctypes")
    again = Analysis.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a and again.python == a.python
    assert again.mixed() == a.mixed()


def test_two_functions_two_groups_one_function_one_group(crashed):
    invoice, a = crashed("python_ctypes", 0)
    receipt, b = crashed("python_ctypes", 1)
    assert generate(a).text != generate(b).text
    assert generate(b).text == receipt.expected_signature


def test_faulthandler_is_seen_through(crashed):
    """faulthandler prints the traceback, then raises SIGSEGV again: the core
    says SIGSEGV sent by the process itself, without an address. The
    analysis reads the fault it caught from the signal frame."""
    sample, a = crashed("python_faulthandler")
    _, plain = crashed("python_ctypes")
    assert a.signal.reraised is not None and a.signal.reraised.name == "SIGSEGV"
    assert a.signal.reraised.code_name == "SI_TKILL" and a.signal.reraised.sender_is_self
    assert a.signal.name == "SIGSEGV" and a.signal.code_name == "SEGV_MAPERR"
    assert a.signal.fault_address == plain.signal.fault_address == 0
    assert generate(a).text == generate(plain).text == sample.expected_signature
    pc = next(i for i in a.disassembly if i.is_pc)
    assert pc.function and "strlen" in pc.function  # the code that faulted, not the handler's


def test_every_thread_and_the_gil(crashed):
    sample, a = crashed("python_threads")
    assert not a.problems, a.problems
    assert len(a.python.threads) == 2
    crashed_py = a.python.thread(a.crashing_thread.lwp)
    assert crashed_py.holds_gil
    assert [f.function for f in crashed_py.frames][:3] == ["string_at", "parse_record", "worker_loop"]
    other = next(t for t in a.python.threads if t is not crashed_py)
    assert not other.holds_gil
    assert "threaded" in [f.function for f in other.frames]  # starting the worker, or waiting for it
    assert generate(a).text == sample.expected_signature
    main = next(t for t in a.mixed().threads if not t.crashed)
    assert "threaded" in [f.function for f in main.frames if f.python]


def test_unreadable_python_stacks_are_one_line_and_the_native_analysis_stands(crashed, tmp_path):
    """A core cut short (max_core_size) lost the interpreter's memory:
    PyStack cannot read it. One problem says so; gdb's analysis stands."""
    sample, full = crashed("python_ctypes")
    data = sample.core.read_bytes()
    cut = tmp_path / "cut.core"
    cut.write_bytes(data[:len(data) * 3 // 4])
    a = analyze_core(cut, sample.exe)
    found = [p for p in a.problems if p.code == P.PYTHON_UNREADABLE]
    assert len(found) == 1 and "\n" not in found[0].message, a.problems
    assert found[0].message.startswith("Python stacks not read by PyStack: ")
    assert a.python is None and P.TRUNCATED_CORE in {p.code for p in a.problems}
    assert a.crashing_thread.frames[0].pc == full.crashing_thread.frames[0].pc
    assert a.signal == full.signal


def test_stack_only_cores_keep_the_python_frames_they_can(crashed, tmp_path):
    """The stack core the collector keeps for a crash over its limits: the
    interpreter's frames of 3.11 are on the thread's data stack, mostly kept."""
    sample, full = crashed("python_ctypes")
    a = analyze_core(stack_core(sample.core, tmp_path / "stack.core"), sample.exe)
    (py,) = a.python.threads
    assert [f.function for f in py.frames][:2] == ["string_at", "load_invoice"]


def test_pystack_gets_gdbs_memory_cap(crashed):
    """The reader runs under the budget's address-space limit: too small a
    cap fails it (one line), it never runs uncapped."""
    sample, _ = crashed("python_ctypes")
    a = analyze_core(sample.core, sample.exe, budget=GdbBudget(memory=24 << 20))
    found = [p for p in a.problems if p.code == P.PYTHON_UNREADABLE]
    assert len(found) == 1 and a.python is None, a.problems


def test_pystack_past_its_deadline_is_killed(crashed):
    """The reader is a process of its own: past the deadline it is killed
    and the answer is one line, whatever PyStack was doing."""
    import os
    import time

    from analyzer.python import PythonStacksError, read_stacks

    sample, _ = crashed("python_ctypes")
    start = time.monotonic()
    with pytest.raises(PythonStacksError, match=r"^PyStack did not finish within 0.01 s$"):
        read_stacks(sample.core, sample.exe, None, "/usr/bin/python3.11", timeout=0.01, memory=4 << 30)
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the reader was reaped, nothing left behind


def test_locals_only_when_asked_and_masked(crashed):
    """``python_locals``: each frame's arguments and locals, read by PyStack
    in the same reader, masked before the analysis leaves the sandbox."""
    sample, plain = crashed("python_locals")
    assert generate(plain).text == sample.expected_signature
    assert not any(f.locals for t in plain.python.threads for f in t.frames)  # not asked: none read
    a = analyze_core(sample.core, sample.exe, options={"python_locals": True})
    assert not a.problems, a.problems
    charge = next(f for f in a.python.threads[0].frames if f.function == "charge")
    assert dict(charge.locals) == {"card_token": "***", "amount": "1250", "customer": '"acme"',
                                   "dsn": '"postgres://billing:***@db/invoices"'}
    assert "hunter2" not in json.dumps(a.to_dict()) and "tok_live" not in json.dumps(a.to_dict())
    mixed = next(f for f in a.mixed().crashing_thread.frames if f.function == "charge")
    assert mixed.python and mixed.locals == charge.locals
    assert generate(a).text == generate(plain).text  # locals never change the group


def test_pystack_runs_in_the_sandbox_under_gdbs_cap(crashed, monkeypatch):
    """PyStack parses hostile memory: its reader is a child of the analysis
    sandbox's child (no root, no capabilities, NO_NEW_PRIVS, namespaces of
    its own) with gdb's address-space cap. Checked in the reader itself: a
    privileged or uncapped reader fails the read, and the problem says so."""
    import os
    import resource
    from pathlib import Path

    import analyzer.python as reader

    sample, _ = crashed("python_ctypes")
    budget = GdbBudget(memory=3 << 30)
    outside = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "net", "pid", "ipc", "uts")}
    real = reader._read

    def confined_read(*args):
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        inside = {n: os.readlink(f"/proc/self/ns/{n}") for n in outside}
        if os.geteuid() == 0 or status["CapEff"].strip() != "0" * 16 or status["NoNewPrivs"].strip() != "1":
            raise AssertionError("the reader ran privileged")
        if any(inside[n] == outside[n] for n in outside):
            raise AssertionError(f"the reader shares the caller's namespaces: {inside}")
        if resource.getrlimit(resource.RLIMIT_AS) != (budget.memory, budget.memory):
            raise AssertionError(f"the reader's address space is {resource.getrlimit(resource.RLIMIT_AS)}")
        return real(*args)

    monkeypatch.setattr(reader, "_read", confined_read)
    a = analyze_core(sample.core, sample.exe, budget=budget)
    assert not a.problems, a.problems
    assert [f.function for f in a.python.threads[0].frames][:2] == ["string_at", "load_invoice"]
