"""Real programs crashed for real, analyzed with real gdb."""

import re

import pytest

NATIVE = ["segv", "double_free", "assert_balance", "assert_queue", "recursion", "thread",
          "cxx_exception", "stripped", "musl"]


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
    _, a, sig = analyzed("recursion")
    t = a.crashing_thread
    assert t.depth > 10_000 and t.truncated
    assert len(t.frames) <= 256 + 16
    assert t.frames[-1].function == "main"  # the outermost frames are kept
    assert a.recursion.cycle == ("walk_tree",) and a.recursion.depth == t.depth
    assert a.recursion.repeats > 10_000


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
