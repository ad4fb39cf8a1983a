"""Stack-only cores (collector/stackcore.py) of real crashes, analyzed with
real gdb: recipe by recipe, every thread's backtrace, the signature and the
key frames match what the full core gives, at a fraction of its size."""

from __future__ import annotations

import pytest

from analyzer.analyze import analyze_core
from analyzer.signature import generate
from builders import stack_core

NATIVE = ["segv", "double_free", "assert_balance", "assert_queue", "recursion", "thread",
          "cxx_exception", "stripped", "musl"]


def frames(analysis) -> list[list[tuple]]:
    return [[(f.function, f.module, f.offset, f.file, f.line) for f in t.frames] for t in analysis.threads]


@pytest.mark.parametrize("name", NATIVE)
def test_stack_core_gives_the_full_cores_backtraces(analyzed, name, tmp_path):
    sample, full, sig = analyzed(name)
    stack = analyze_core(stack_core(sample.core, tmp_path / "stack.core"), sample.exe)
    assert frames(stack) == frames(full)
    assert [(t.lwp, t.depth) for t in stack.threads] == [(t.lwp, t.depth) for t in full.threads]
    assert stack.crashing_thread.lwp == full.crashing_thread.lwp
    stack_sig = generate(stack)
    assert stack_sig.text == sig.text and stack_sig.key_frames == sig.key_frames
    assert stack.signal == full.signal and stack.executable == full.executable
    size = (tmp_path / "stack.core").stat().st_size
    assert size <= 9 << 20 and (size < sample.core.stat().st_size // 2 or name == "recursion")


@pytest.mark.parametrize("name", ["double_free", "assert_balance", "recursion", "cxx_exception"])
def test_what_the_globals_give_survives(analyzed, name, tmp_path):
    """abort messages and assertions are read from libc's globals, kept."""
    sample, full, _ = analyzed(name)
    stack = analyze_core(stack_core(sample.core, tmp_path / "stack.core"), sample.exe)
    assert (stack.abort_message, stack.assertion, stack.recursion) == (full.abort_message, full.assertion,
                                                                        full.recursion)
    assert stack.problems == full.problems
