"""Where symbols come from: a captured sysroot, the executable given, and
separate debug files by build-id."""

import shutil
import subprocess

from analyzer.analyze import analyze_core
from analyzer.problems import MISSING_EXECUTABLE
from analyzer.signature import generate


def _sysroot_with(tmp_path, sample, *host_files):
    root = tmp_path / "sysroot"
    for path in (str(sample.exe), *host_files):
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return root


def test_sysroot_is_used_for_executable_and_libraries(tmp_path, samples):
    s = samples("segv", 7)
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    root = _sysroot_with(tmp_path, s, libc, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    a = analyze_core(s.core, sysroot=root)
    found = {m.path: m.found_at for m in a.modules}
    assert found[str(s.exe)].startswith(str(root))
    assert found[libc].startswith(str(root))
    assert generate(a).text == s.expected_signature


def test_sysroot_without_the_program_says_so(tmp_path, samples):
    s = samples("segv")
    empty = tmp_path / "empty-root"
    empty.mkdir()
    a = analyze_core(s.core, sysroot=empty)
    assert any("not found" in p for p in a.problems)
    assert any(p.code == MISSING_EXECUTABLE for p in a.problems)
    assert str(s.exe) in a.modules_without_symbols


def test_separate_debug_file_by_build_id(tmp_path, samples):
    s = samples("segv", 8)
    root = _sysroot_with(tmp_path, s)
    exe_in_root = root / str(s.exe).lstrip("/")
    debug = tmp_path / "segv.debug"
    subprocess.run(["objcopy", "--only-keep-debug", exe_in_root, debug], check=True)
    subprocess.run(["strip", "--strip-all", exe_in_root], check=True)
    stripped = analyze_core(s.core, sysroot=root)
    assert generate(stripped).frames[1].startswith("segv+0x")  # no names without the debug file

    build_id = next(m.build_id for m in stripped.modules if m.path == str(s.exe))
    target = root / "usr/lib/debug/.build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    shutil.copy(debug, target)
    a = analyze_core(s.core, sysroot=root)
    exe_module = next(m for m in a.modules if m.path == str(s.exe))
    assert exe_module.symbols == "debug"
    assert generate(a).text == s.expected_signature
