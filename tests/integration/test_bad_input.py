"""Bad cores and bad requests: a record with a reason, a one-line error,
never a traceback or a hang."""

import shutil

import pytest

from analyzer import problems as P
from analyzer.analyze import analyze_core
from analyzer.gdb import GdbBudget
from coretriage.ingest import ingest
from coretriage.cli import main


def codes(analysis):
    return {p.code for p in analysis.problems}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_truncated_core_still_gives_a_record(samples, tmp_path):
    s = samples("segv")
    data = s.core.read_bytes()
    cut = tmp_path / "truncated.core"
    cut.write_bytes(data[: len(data) // 3])
    a = analyze_core(cut, s.exe)
    assert any("truncated" in p for p in a.problems)
    assert P.TRUNCATED_CORE in codes(a)
    assert a.signal.name == "SIGSEGV" and a.pid  # the notes survived the cut


def test_garbage_is_recorded_with_a_reason(config, store, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 200)
    done = ingest(config, store, junk)
    assert done.analysis.problems[0].startswith("not a core dump")
    assert done.analysis.problems[0].code == P.NOT_A_CORE
    assert done.crash.id and done.signature.text.startswith("unknown | no signal")


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
    a = analyze_core(s.core, s.exe, budget=GdbBudget(timeout=0.5))
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


@pytest.mark.parametrize("argv, message", [
    (["show", "c123"], "neither a crash id"),
    (["show", "c000000000000"], "no crash c000000000000"),
    (["export", "g999", "--format", "text"], "no group g999"),
    (["ingest", "/nonexistent/core"], "no such file"),
    (["ingest", "/bin/true"], "not a core dump"),
    (["ingest", "/bin/true", "--exe", "/nonexistent"], "executable not found"),
    (["gdb", "g5"], "no group g5"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, "--data-dir", str(tmp_path), *argv)
    assert code != 0
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_config_is_one_line(capsys, tmp_path):
    (tmp_path / "coretriage.toml").write_text("this is = = not toml")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "list")
    assert code == 1 and err.startswith("coretriage: error:") and err.count("\n") == 1
