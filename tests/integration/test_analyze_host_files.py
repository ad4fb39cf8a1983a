"""A loose core (a dump directory, ``coretriage ingest CORE``) has no
sysroot: the files it names are looked for on this host. One is used, by us
and by gdb, only when its build-id is the one the core recorded; a library
replaced by another build since the crash, or one the core records no
build-id for, is not used, and the analysis says so."""

from __future__ import annotations

import subprocess

import pytest

import crashkit
from analyzer.analyze import analyze_core

LIB = "void {name}(void) {{ *(volatile int *)0 = 0; }}\n"
PROGRAM = "void victim_crash(void);\nint main(void) { victim_crash(); return 0; }\n"


def _build(directory, function: str, *flags: str):
    src = directory / "lib.c"
    src.write_text(LIB.format(name=function))
    lib = directory / "libvictim.so"
    subprocess.run(["gcc", "-g", "-shared", "-fPIC", "-o", str(lib), str(src), *flags], check=True,
                   capture_output=True)
    return lib


def _crash_with_library(tmp_path, *flags: str):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    _build(libdir, "victim_crash", *flags)
    (tmp_path / "main.c").write_text(PROGRAM)
    exe = tmp_path / "victim"
    subprocess.run(["gcc", "-g", "-o", str(exe), str(tmp_path / "main.c"), f"-L{libdir}", "-lvictim",
                    f"-Wl,-rpath,{libdir}"], check=True, capture_output=True)
    with crashkit.cores_into(tmp_path / "cores") as cores:
        proc = subprocess.Popen([str(exe)], preexec_fn=crashkit.allow_cores)
        assert proc.wait(timeout=60) == -11
        core = crashkit.wait_for_core(cores, proc.pid)
    return core, libdir


def _frame_names(analysis):
    return [f.function for f in analysis.crashing_thread.frames]


def test_library_replaced_on_the_host_is_not_used(tmp_path):
    core, libdir = _crash_with_library(tmp_path)
    before = analyze_core(core)
    assert _frame_names(before)[:2] == ["victim_crash", "main"] and not before.problems

    _build(libdir, "replaced_build")  # the same library, another build, at the same path
    a = analyze_core(core)
    lib = next(m for m in a.modules if m.path == str(libdir / "libvictim.so"))
    assert lib.found_at is None and lib.symbols == "missing"
    assert "replaced_build" not in _frame_names(a), _frame_names(a)  # gdb did not load it either
    assert [p for p in a.problems if p.code == "wrong_build" and "libvictim.so" in p]
    assert "main" in _frame_names(a)  # the program's own file is still used: it is the build that crashed


@pytest.mark.parametrize("flags", [("-Wl,--build-id=none",)])
def test_library_without_build_id_cannot_be_checked_and_is_not_used(tmp_path, flags):
    core, libdir = _crash_with_library(tmp_path, *flags)
    _build(libdir, "replaced_build", *flags)
    a = analyze_core(core)
    assert "replaced_build" not in _frame_names(a), _frame_names(a)
    refused = [p for p in a.problems if p.code == "unverified_module"]
    assert refused and "libvictim.so" in refused[0] and "no build-id" in refused[0]
