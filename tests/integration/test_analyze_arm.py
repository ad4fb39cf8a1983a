"""Cores of other machines: the sample programs built with Debian's cross
compilers for aarch64 and 32-bit ARM, crashed under qemu-user (which writes
a real core of that machine), analyzed here with gdb-multiarch; then the
same bug on x86-64 and aarch64 in one group. ``make test`` installs the
toolchains (APT_PKGS): a missing one fails, never skips."""

import json
import re

import pytest

from analyzer.analyze import analyze_core
from analyzer.arch import host_arch
from analyzer.signature import generate
from coretriage.cli import main
from coretriage.ingest import ingest

RECIPES = ["aarch64-segv-static", "aarch64-segv-dynamic", "aarch64-assert", "aarch64-recursion",
           "arm-segv-static", "arm-segv-dynamic", "arm-assert", "arm-recursion"]
REGISTERS = {"aarch64": [f"x{i}" for i in range(31)] + ["sp", "pc", "cpsr"],
             "arm": [f"r{i}" for i in range(13)] + ["sp", "lr", "pc", "cpsr"]}
PROGRAM = {"segv": "header_length", "assert": "check_balance", "recursion": "walk_tree"}


@pytest.fixture(scope="session")
def cross(sample_dir):
    from recipes import cross as recipes

    cache = {}

    def get(name):
        if name not in cache:
            s = recipes.RECIPES[name](sample_dir / "cross")
            a = analyze_core(s.core, s.exe, sysroot=s.sysroot)
            cache[name] = (s, a, generate(a))
        return cache[name]

    return get


@pytest.mark.parametrize("name", RECIPES)
def test_backtrace_signature_registers_and_architecture(cross, name):
    sample, a, sig = cross(name)
    arch = sample.extra["arch"]
    assert a.architecture == arch and host_arch() != arch
    assert a.executable == str(sample.exe)  # no NT_FILE in a qemu core: AT_EXECFN's name
    assert a.problems == ()
    assert sig.text == sample.expected_signature
    assert a.signal.name == sample.expected_signal
    frames = a.crashing_thread.frames
    key = frames[sig.key_frames[0]]
    assert key.function == PROGRAM[name.split("-")[1]] and key.file.endswith(".c") and key.line
    # main is reached, but for a stack overflow too deep to unwind to the bottom
    assert "main" in [f.function for f in frames] or a.crashing_thread.depth_is_minimum
    # the architecture's own registers, in its order, every one read
    regs = dict(a.registers)
    assert [n for n, _ in a.registers] == REGISTERS[arch]
    assert all(re.fullmatch(r"0x[0-9a-f]+", v) for v in regs.values()), regs
    pcs = [i for i in a.disassembly if i.is_pc]
    assert len(pcs) == 1 and pcs[0].address == int(regs["pc"], 16) == frames[0].pc


def test_abort_message_and_assertion_on_arm(cross):
    for name in ("aarch64-assert", "arm-assert"):
        _, a, _ = cross(name)
        assert a.assertion == 'debit == credit && "ledger out of balance"'
        assert "check_balance: Assertion" in a.abort_message


def test_stack_overflow_is_a_recursion(cross):
    for name in ("aarch64-recursion", "arm-recursion"):
        _, a, _ = cross(name)
        assert a.recursion.cycle == ("walk_tree",) and a.recursion.depth >= 10_000


def test_dynamic_program_symbolized_from_the_cross_sysroot(cross):
    sample, a, _ = cross("aarch64-segv-dynamic")
    frames = a.crashing_thread.frames
    assert frames[0].module and frames[0].module.startswith(str(sample.sysroot))  # libc, from the sysroot
    assert [f.function for f in frames[1:4]] == ["header_length", "parse_request", "main"]
    # without it, gdb has no libc to unwind through: a record that says little, not an error
    without = analyze_core(sample.core, sample.exe)
    assert without.architecture == "aarch64" and without.crashing_thread.frames[0].function is None
    # nor without the program: the record says what is missing
    bare = analyze_core(sample.core)
    assert [p.code for p in bare.problems] == ["missing_executable"] and bare.executable == str(sample.exe)


def test_one_bug_one_group_on_two_machines(config, store, samples, cross):
    from webclient import viewer_test_client
    from webui import create_app

    x86 = samples("segv")
    arm, _, _ = cross("aarch64-segv-static")
    done = [ingest(config, store, s.core, s.exe) for s in (x86, arm)]
    assert done[0].crash.group_id == done[1].crash.group_id
    assert done[0].signature.text == done[1].signature.text == "strlen | header_length | parse_request | main"
    for d in done:
        frames = d.analysis.crashing_thread.frames
        assert frames[d.signature.key_frames[0]].function == "header_length"
    assert {d.analysis.architecture for d in done} == {"x86-64", "aarch64"}

    app = create_app({"CORETRIAGE": config, "TESTING": True})
    c = viewer_test_client(app)
    page = c.get(f"/groups/{done[0].crash.group_id}").text
    assert "x86-64 &times;1" in page and "aarch64 &times;1" in page
    crash_page = c.get(f"/crashes/{done[1].crash.id}").text
    assert re.search(r'<dd class="arch">aarch64</dd>', crash_page)


def test_cli_ingests_an_aarch64_core(capsys, tmp_path, cross):
    """The issue's first try: ``coretriage ingest`` on a qemu-aarch64 core."""
    s, _, _ = cross("aarch64-segv-static")
    code = main(["--data-dir", str(tmp_path), "ingest", str(s.core), "--exe", str(s.exe), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    assert got["signature"] == "strlen | header_length | parse_request | main"
    assert [f["function"] for f in got["key_frames"]] == ["header_length", "parse_request", "main"]
