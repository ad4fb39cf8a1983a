"""analyzer/analyze.py: real programs crashed for real, analyzed with real
gdb; then broken cores (truncated, missing or wrong executable, gdb out of
time, a hostile file name): a record with a reason, never a traceback or a hang."""

import re
import shutil

import pytest

from analyzer import problems as P
from analyzer.analyze import analyze_core
from analyzer.gdb import GdbBudget

NATIVE = ["segv", "double_free", "assert_balance", "assert_queue", "recursion", "thread",
          "cxx_exception", "stripped", "musl", "reraise"]


@pytest.mark.parametrize("name", NATIVE)
def test_signature_and_signal(analyzed, name):
    sample, analysis, sig = analyzed(name)
    assert analysis.signal.name == sample.expected_signal
    if sample.expected_signature:
        assert sig.text == sample.expected_signature
    else:
        assert re.match(sample.expected_prefix, sig.text), sig.text
    assert analysis.problems == ()
    assert analysis.pid and analysis.executable == str(sample.exe)
    assert sig.key_frames, "every sample has program frames"


@pytest.mark.parametrize("name", ["segv", "thread", "musl"])
def test_fault_details(analyzed, name):
    _, a, _ = analyzed(name)
    assert a.signal.code_name == "SEGV_MAPERR"
    assert a.signal.fault_address is not None and a.signal.fault_address < 0x1000  # NULL + small offset
    regs = dict(a.registers)
    assert {"rip", "rsp", "rax"} <= regs.keys()
    pcs = [i for i in a.disassembly if i.is_pc]
    assert len(pcs) == 1 and pcs[0].address == int(regs["rip"], 16)
    assert pcs[0].address == a.crashing_thread.frames[0].pc


def test_frames_have_modules_build_ids_offsets_and_lines(analyzed):
    sample, a, sig = analyzed("segv")
    frame = a.crashing_thread.frames[sig.key_frames[0]]
    assert frame.function == "header_length"
    assert frame.module == str(sample.exe) and frame.file.endswith("segv.c") and frame.line == 11
    exe_module = next(m for m in a.modules if m.path == str(sample.exe))
    assert frame.build_id == exe_module.build_id and len(exe_module.build_id) == 40
    assert frame.offset == frame.pc - exe_module.start
    assert a.libc.startswith("glibc 2.")
    libc = next(m for m in a.modules if m.path.endswith("libc.so.6"))
    assert libc.build_id and libc.symbols in ("debug", "symtab", "dynsym")


def test_double_free_abort_message(analyzed):
    _, a, _ = analyzed("double_free")
    assert a.abort_message == "free(): double free detected in tcache 2"
    assert a.signal.code_name == "SI_TKILL" and a.signal.fault_address is None


def test_assertion_text(analyzed):
    _, a, _ = analyzed("assert_balance")
    assert a.assertion == 'debit == credit && "ledger out of balance"'
    assert "check_balance: Assertion" in a.abort_message


def test_worker_thread_is_marked_crashed(analyzed):
    sample, a, _ = analyzed("thread")
    assert len(a.threads) == sample.extra["threads"]
    crashed = [t for t in a.threads if t.crashed]
    assert len(crashed) == 1 and a.threads[0] is crashed[0]
    assert crashed[0].lwp != a.pid  # not the main thread
    assert crashed[0].frames[0].function == "handle_job"
    assert all(t.frames for t in a.threads)


def test_stack_overflow_is_bounded_and_recursion_reported(analyzed):
    from analyzer.analyze import DEPTH_CAP

    _, a, sig = analyzed("recursion")
    t = a.crashing_thread
    assert t.depth == DEPTH_CAP and t.depth_is_minimum and t.truncated  # ~87,000 frames: not all unwound
    assert len(t.frames) <= 256 and t.depth_text == f"at least {DEPTH_CAP:,} frames"
    assert a.recursion.cycle == ("walk_tree",) and a.recursion.depth_is_minimum
    assert a.recursion.repeats > 9_000
    assert sig.text == "walk_tree" and "at least" in " ".join(sig.notes)
    assert P.STACK_TOO_DEEP not in codes(a)  # the recursion explains the depth


def test_stack_overflow_groups_alike_whatever_the_stack_size(samples, tmp_path):
    """8 MiB and 64 MiB stacks: ~87,000 and ~700,000 frames of the same bug."""
    import resource
    import subprocess
    import sys
    from pathlib import Path

    from analyzer.signature import generate

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sample-cores"))
    import crashkit

    exe = samples("recursion").exe
    got = {}
    for mib in (8, 64):
        def limits(mib=mib):
            crashkit.allow_cores()
            resource.setrlimit(resource.RLIMIT_STACK, (mib << 20, mib << 20))

        cores = tmp_path / f"cores{mib}"
        with crashkit.cores_into(cores):
            proc = subprocess.Popen([str(exe)], preexec_fn=limits, stdout=subprocess.DEVNULL)
            assert proc.wait(timeout=60) < 0
            core = crashkit.wait_for_core(cores, proc.pid)
        assert core.stat().st_size > (mib - 1) << 20  # the whole stack is in the core
        a = analyze_core(core, exe)
        got[mib] = (generate(a).text, a.crashing_thread.depth_text, len(a.crashing_thread.frames))
    assert got[8] == got[64] and got[8][0] == "walk_tree" and got[8][1].startswith("at least")


def test_stripped_binary_has_no_symbols_recorded(analyzed):
    sample, a, _ = analyzed("stripped")
    assert str(sample.exe) in a.modules_without_symbols
    assert a.crashing_thread.frames[1].function is None


def test_musl_is_detected(analyzed):
    _, a, _ = analyzed("musl")
    assert a.libc.startswith("musl")


def test_cxx_names_are_demangled_and_normalised(analyzed):
    _, a, sig = analyzed("cxx_exception")
    assert any(f.function and "billing::Ledger<long>::total" in f.function for f in a.crashing_thread.frames)
    assert sig.frames[0] == "billing::Ledger<T>::total"


# ---- broken cores ----

def codes(analysis):
    return {p.code for p in analysis.problems}


def test_truncated_core_still_gives_a_record(samples, tmp_path):
    s = samples("segv")
    data = s.core.read_bytes()
    cut = tmp_path / "truncated.core"
    cut.write_bytes(data[: len(data) // 3])
    a = analyze_core(cut, s.exe)
    assert any("truncated" in p for p in a.problems)
    assert P.TRUNCATED_CORE in codes(a)
    assert a.signal.name == "SIGSEGV" and a.pid  # the notes survived the cut


def test_missing_executable_is_explained(samples, tmp_path):
    import crashkit

    exe_copy = tmp_path / "segv-copy"
    shutil.copy(samples("segv").exe, exe_copy)
    core = crashkit.crash([str(exe_copy), "x"], tmp_path / "cores")
    exe_copy.unlink()  # gone, as on a host where the image was removed
    a = analyze_core(core)
    assert any("executable" in p and "not found" in p for p in a.problems)
    assert P.MISSING_EXECUTABLE in codes(a)
    assert a.signal.name == "SIGSEGV"
    assert a.crashing_thread is not None  # libc frames still unwind


def test_gdb_timeout_gives_partial_record(samples):
    s = samples("recursion")
    # 50 ms: less than gdb takes to load a core at all (the overflow itself
    # is analyzed in well under a second since unwinding stops at 10,000 frames)
    a = analyze_core(s.core, s.exe, budget=GdbBudget(timeout=0.05))
    assert any("did not finish" in p for p in a.problems)
    assert P.GDB_TIMEOUT in codes(a)
    assert a.signal.name == "SIGSEGV"  # from the core notes, not gdb


def test_wrong_build_is_not_trusted(samples, tmp_path):
    s = samples("segv")
    other = samples("double_free").exe
    a = analyze_core(s.core, other)
    assert any("not the build that crashed" in p for p in a.problems)
    assert P.WRONG_BUILD in codes(a)


def test_hostile_core_name(samples, tmp_path):
    s = samples("segv")
    odd = tmp_path / 'a core "with" spaces\nand newline'
    shutil.copy(s.core, odd)
    a = analyze_core(odd, s.exe)
    assert a.problems == () and a.crashing_thread.frames[1].function == "header_length"
