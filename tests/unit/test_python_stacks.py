"""Python crashes on hand-built records: interpreter detection, the mixed
stack, thread pairing, frame names, the signature rules, the signal frame
of a crash handler and the PyStack reader's answer (the integration tests
run the same code on real cores)."""

import struct

import pytest

from analyzer import sigframe
from analyzer.mixed import mixed_frames, pair, runs
from analyzer.model import Analysis, Frame, PythonFrame, PythonState, PythonThread, SignalInfo, Thread
from analyzer.python import PythonStacksError, interpreter_of, state_from
from analyzer.signature import generate, load_rules
from analyzer.signature.names import python_name

PY = "/usr/bin/python3.11"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
CTYPES = "/usr/lib/python3.11/ctypes/__init__.py"
APP = "/srv/app/invoices.py"


def native(*names, module=PY):
    out = []
    for i, spec in enumerate(names):
        name, mod = spec if isinstance(spec, tuple) else (spec, module)
        out.append(Frame(index=i, pc=0x1000 + i, function=name if not name.startswith("+") else None,
                         module=mod, offset=int(name[1:], 16) if name.startswith("+") else 0x10 * i))
    return tuple(out)


def py(*specs):
    """(function, file, line, entry)"""
    return tuple(PythonFrame(f, file, line, entry) for f, file, line, entry in specs)


def crash(frames, python_frames, lwp=100, executable=PY):
    thread = Thread(1, lwp, True, frames)
    state = PythonState(PY, "3.11", (PythonThread(lwp, python_frames, holds_gil=True),))
    return Analysis(core="c", executable=executable, threads=(thread,), signal=SignalInfo(11, "SIGSEGV"),
                    python=state)


CTYPES_NATIVE = native(("__strlen_evex", LIBC), ("+e197", "/usr/lib/python3.11/lib-dynload/_ctypes.so"),
                       ("+6f7a", "/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2"),
                       ("ffi_call", "/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2"), "_PyObject_MakeTpCall",
                       "_PyEval_EvalFrameDefault", "PyEval_EvalCode", "+247d97", "Py_RunMain",
                       ("__libc_start_call_main", LIBC), "_start")


def invoice_stack(caller="handle_request", function="load_invoice"):
    return py(("string_at", CTYPES, 519, False), (function, APP, 6, False), (caller, APP, 15, False),
              ("<module>", APP, 30, True))


@pytest.mark.parametrize("exe, modules, found", [
    ("/usr/bin/python3.11", [], "/usr/bin/python3.11"),
    ("/usr/local/bin/python3", [], "/usr/local/bin/python3"),
    ("/usr/bin/uwsgi-core", ["/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"],
     "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
    ("/usr/sbin/haproxy", ["/usr/lib/x86_64-linux-gnu/libc.so.6"], None),
    ("/usr/bin/python-wrapper", [], None),
    (None, [], None),
])
def test_interpreter_detection(exe, modules, found):
    assert interpreter_of(exe, modules) == found


def test_runs_split_at_entry_frames():
    frames = py(("c", "f", 1, False), ("b", "f", 2, True), ("a", "f", 3, True))
    assert [[f.function for f in r] for r in runs(frames)] == [["c", "b"], ["a"]]


def test_each_eval_frame_gets_its_run():
    frames = native("leaf", "_PyEval_EvalFrameDefault", "call_trampoline", "_PyEval_EvalFrameDefault", "main")
    python = PythonThread(1, py(("inner", "x.py", 3, True), ("outer2", "x.py", 2, False),
                                ("outer", "x.py", 1, True)))
    mixed = mixed_frames(frames, python)
    assert [f.function for f in mixed] == ["leaf", "inner", "call_trampoline", "outer2", "outer", "main"]
    assert [f.index for f in mixed] == [0, 1, 2, 3, 4, 5]
    assert [f.python for f in mixed] == [False, True, False, True, True, False]


def test_gaps_in_a_deep_stack_are_kept():
    frames = native("leaf", "_PyEval_EvalFrameDefault") + (Frame(index=300, pc=1, function="main", module=PY),)
    mixed = mixed_frames(frames, PythonThread(1, py(("b", "x.py", 2, False), ("a", "x.py", 1, True))))
    assert [f.index for f in mixed] == [0, 1, 2, 301]


def test_more_runs_than_eval_frames_go_to_the_outermost():
    frames = native("leaf", "_PyEval_EvalFrameDefault", "main")
    python = PythonThread(1, py(("b", "x.py", 2, True), ("a", "x.py", 1, True)))
    assert [f.function for f in mixed_frames(frames, python)] == ["leaf", "b", "a", "main"]


def test_no_eval_frame_puts_python_after_the_native_frames():
    frames = native("+10", "+20")
    mixed = mixed_frames(frames, PythonThread(1, py(("a", "x.py", 1, True),)))
    assert [(f.python, f.index) for f in mixed] == [(False, 0), (False, 1), (True, 2)]


def test_forked_worker_pairs_the_gil_holder_with_the_crashed_thread():
    """uwsgi's workers keep the master's thread id in their thread state."""
    t = Thread(1, 30664, True, native("boom", "_PyEval_EvalFrameDefault"))
    state = PythonState(PY, "3.11", (PythonThread(30662, py(("app", "a.py", 1, True),), holds_gil=True),))
    assert pair((t,), state)[1] is state.threads[0]
    assert [f.function for f in Analysis(core="c", threads=(t,), python=state).mixed().threads[0].frames] == \
        ["boom", "app"]


def test_frames_and_analysis_describe_python_like_a_traceback():
    a = crash(CTYPES_NATIVE, invoice_stack()).mixed()
    lines = [f.describe() for f in a.crashing_thread.frames]
    assert f'#5   File "{CTYPES}", line 519, in string_at' in lines
    assert a.mixed() is a or a.mixed() == a


@pytest.mark.parametrize("file, function, name, library", [
    (CTYPES, "string_at", "ctypes.string_at", True),
    ("/usr/lib/python3/dist-packages/lxml/etree.py", "parse", "lxml.etree.parse", True),
    ("/srv/venv/lib/python3.11/site-packages/psycopg/cursor.py", "execute", "psycopg.cursor.execute", True),
    ("/usr/lib/python3.11/json/__init__.py", "loads", "json.loads", True),
    ("<frozen importlib._bootstrap>", "_load", "importlib._bootstrap._load", True),
    (APP, "load_invoice", "invoices.load_invoice", False),
    ("/srv/app/shop/__init__.py", "boot", "shop.boot", False),
    ("<string>", "<module>", "<string>:<module>", False),
])
def test_python_frame_names(file, function, name, library):
    assert python_name(file, function, load_rules().python_library) == (name, library)


def test_signature_is_the_c_call_and_the_programs_python_function():
    sig = generate(crash(CTYPES_NATIVE, invoice_stack()))
    assert sig.text == "strlen | ctypes.string_at | invoices.load_invoice"
    reasons = dict(sig.skipped)
    assert reasons["#4 _PyObject_MakeTpCall"] == "interpreter machinery (python_skip.txt)"
    assert any("libffi" in frame for frame in reasons)


def test_ctypes_with_symbols_groups_as_without():
    """Where _ctypes has symbols (a CPython built from source, Debian's with
    its debug symbols) its C string_at is named: still the same group."""
    ctypes_so = "/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so"
    named = (CTYPES_NATIVE[0], Frame(index=1, pc=0x1001, function="string_at", module=ctypes_so, offset=0xe197),
             *CTYPES_NATIVE[2:])
    assert generate(crash(named, invoice_stack())).text == generate(crash(CTYPES_NATIVE, invoice_stack())).text == \
        "strlen | ctypes.string_at | invoices.load_invoice"


def test_one_function_through_two_call_paths_is_one_group():
    a = generate(crash(CTYPES_NATIVE, invoice_stack(caller="handle_request")))
    b = generate(crash(CTYPES_NATIVE, invoice_stack(caller="batch_job")))
    assert a.text == b.text


def test_two_functions_in_the_same_c_call_are_two_groups():
    a = generate(crash(CTYPES_NATIVE, invoice_stack(function="load_invoice")))
    b = generate(crash(CTYPES_NATIVE, invoice_stack(function="load_receipt")))
    assert a.text != b.text and b.text.endswith("invoices.load_receipt")


def test_key_frames_are_the_programs_python_frames():
    a = crash(CTYPES_NATIVE, invoice_stack())
    sig = generate(a)
    mixed = {f.index: f for f in a.mixed().crashing_thread.frames}
    assert [mixed[i].function for i in sig.key_frames] == ["load_invoice", "handle_request", "<module>"]


def test_python_machinery_is_only_skipped_for_an_interpreter():
    """A native program with a function called call_function keeps it."""
    frames = native("crash_here", "call_function", "main", module="/usr/sbin/app")
    a = Analysis(core="c", executable="/usr/sbin/app", threads=(Thread(1, 1, True, frames),))
    assert generate(a).text == "crash_here | call_function | main"


def test_users_extend_the_python_lists(tmp_path):
    (tmp_path / "python_library.txt").write_text("/srv/app/vendor/\n")
    rules = load_rules(tmp_path)
    assert python_name("/srv/app/vendor/pdf/render.py", "draw", rules.python_library) == ("pdf.render.draw", True)
    assert rules.version != load_rules().version


def test_native_only_analysis_of_an_interpreter_still_skips_its_machinery():
    """PyStack could not read the core: the native signature at least
    does not read like every other Python crash."""
    a = Analysis(core="c", executable=PY, threads=(Thread(1, 1, True, CTYPES_NATIVE),))
    assert "_PyObject_MakeTpCall" not in generate(a).text


# -- the signal frame a crash handler ran on --------------------------------

def x86_64_frame(trapno=14, err=4, cr2=0x10):
    uc = bytearray(sigframe.WANTED["x86-64"])
    struct.pack_into("<Q", uc, 0, 7)  # uc_flags
    struct.pack_into("<QQQQ", uc, sigframe.X86_64_SIGCONTEXT + 8 * 8 + 10 * 8 + 8, err, trapno, 0, cr2)
    uc[sigframe.X86_64_UCONTEXT:] = b"\x7f" * sigframe.SIGINFO  # stack garbage: no SA_SIGINFO
    return bytes(uc)


def test_handler_without_siginfo_gives_the_page_fault():
    found = sigframe.sigcontext_fault("x86-64", x86_64_frame())
    assert (found.signo, found.code, found.address) == (11, 1, 0x10)  # SEGV_MAPERR
    assert sigframe.sigcontext_fault("x86-64", x86_64_frame(err=7)).code == 2  # SEGV_ACCERR: page present


def test_other_traps_give_their_signal_without_an_address():
    found = sigframe.sigcontext_fault("x86-64", x86_64_frame(trapno=0))  # divide error
    assert (found.signo, found.address) == (8, None)


def test_no_fault_in_the_frame_is_none():
    assert sigframe.sigcontext_fault("x86-64", x86_64_frame(trapno=99)) is None
    assert sigframe.sigcontext_fault("x86-64", b"short") is None
    assert sigframe.sigcontext_fault("aarch64", x86_64_frame()) is None


def test_the_siginfo_of_an_sa_siginfo_handler_follows_the_ucontext():
    frame = bytearray(x86_64_frame())
    struct.pack_into("<iii4xQ", frame, sigframe.X86_64_UCONTEXT, 11, 0, 2, 0xdead)
    assert sigframe.siginfo_bytes("x86-64", bytes(frame))[:4] == struct.pack("<i", 11)
    assert sigframe.siginfo_bytes("riscv64", bytes(frame)) == b""


# -- the reader's answer is hostile data ------------------------------------

def test_reader_answer_becomes_records():
    state = state_from({"version": "3.11", "threads": [
        {"tid": 5, "holds_gil": True, "gc": False, "name": None,
         "frames": [{"function": "f", "file": "a.py", "line": 3, "entry": True}]}]}, PY)
    assert state == PythonState(PY, "3.11", (PythonThread(5, (PythonFrame("f", "a.py", 3, True),), True),))


@pytest.mark.parametrize("answer", [
    {"threads": [{"tid": "x", "frames": []}]},
    {"threads": [{"tid": 1, "frames": [{"function": 3, "file": "a.py"}]}]},
    {"threads": [{"frames": []}]},
    {"threads": 7},
])
def test_malformed_reader_answers_are_one_error(answer):
    with pytest.raises(PythonStacksError, match="malformed"):
        state_from(answer, PY)


def test_long_names_are_cut():
    state = state_from({"threads": [{"tid": 1, "frames": [{"function": "f" * 5000, "file": "a.py", "line": None}]}]},
                       PY)
    assert len(state.threads[0].frames[0].function) == 1024 and state.threads[0].frames[0].line is None


# -- Python locals: optional, masked, admins only -----------------------------

def test_reader_answer_keeps_locals_cut_to_size():
    from analyzer.python import MAX_LOCALS, MAX_VALUE

    frame = {"function": "f", "file": "a.py", "line": 3, "entry": True,
             "locals": [["n", "1"], ["blob", "x" * 5000]] + [[f"v{i}", "0"] for i in range(200)]}
    (f,) = state_from({"threads": [{"tid": 1, "frames": [frame]}]}, PY).threads[0].frames
    assert f.locals[0] == ("n", "1") and f.locals[1] == ("blob", "x" * MAX_VALUE)
    assert len(f.locals) == MAX_LOCALS


def test_names_from_the_core_are_one_line():
    frame = {"function": "f\n#1   File \"x.py\", line 2, in g", "file": "a\r.py", "line": 3}
    (f,) = state_from({"threads": [{"tid": 1, "frames": [frame]}]}, PY).threads[0].frames
    assert "\n" not in f.function and f.file == "a\\r.py"


def test_locals_are_one_line_each():
    frame = {"function": "f", "file": "a.py", "line": 3,
             "locals": [["note", "'x\n#0   File \"forged.py\", line 1, in evil'"], ["t\tab", "\x1b[31mred"]]}
    (f,) = state_from({"threads": [{"tid": 1, "frames": [frame]}]}, PY).threads[0].frames
    assert f.locals == (("note", "'x\\n#0   File \"forged.py\", line 1, in evil'"), ("t\\tab", "\\x1b[31mred"))


@pytest.mark.parametrize("locals_", [{"n": "1"}, [["n"]], [[1, "x"]], 7])
def test_malformed_locals_are_one_error(locals_):
    frame = {"function": "f", "file": "a.py", "line": 3, "locals": locals_}
    with pytest.raises(PythonStacksError, match="malformed"):
        state_from({"threads": [{"tid": 1, "frames": [frame]}]}, PY)


def test_locals_are_masked_like_the_environment():
    from analyzer.python import masked

    frame = PythonFrame("charge", APP, 7, locals=(("card_token", "'tok_live_4242'"), ("amount", "1250"),
                                                  ("dsn", "'postgres://billing:hunter2@db/invoices'"),
                                                  ("query", "'id=7&password=hunter2'")))
    state = masked(PythonState(PY, "3.11", (PythonThread(1, (frame,)),)), ("*TOKEN*", "*PASSWORD*"))
    got = dict(state.threads[0].frames[0].locals)
    assert got.pop("query").startswith("'id=7&password=***")
    assert got == {"card_token": "***", "amount": "1250", "dsn": "'postgres://billing:***@db/invoices'"}
    assert masked(state, ("*TOKEN*", "*PASSWORD*")) == state  # idempotent


def test_mixed_frames_carry_the_locals():
    frames = native("leaf", "_PyEval_EvalFrameDefault", "main")
    python = PythonThread(1, (PythonFrame("f", "x.py", 2, True, (("n", "1"),)),))
    assert [f.locals for f in mixed_frames(frames, python)] == [(), (("n", "1"),), ()]


def test_users_extend_the_interpreter_machinery(tmp_path):
    """A Cython module's wrapper between the eval loop and the C function:
    skipped once the user's python_skip.txt names it."""
    shop = "/srv/app/shop.so"
    frames = native(("__strlen_evex", LIBC), ("total_of", shop), ("__pyx_pw_4shop_1total", shop),
                    "cfunction_vectorcall_O", "_PyEval_EvalFrameDefault", "Py_RunMain",
                    ("__libc_start_call_main", LIBC))
    a = crash(frames, py(("render_invoice", APP, 6, True),))
    assert generate(a).text == "strlen | total_of | __pyx_pw_4shop_1total | invoices.render_invoice"
    (tmp_path / "python_skip.txt").write_text("__pyx_pw_\\w+\n")
    assert generate(a, load_rules(tmp_path)).text == "strlen | total_of | invoices.render_invoice"
