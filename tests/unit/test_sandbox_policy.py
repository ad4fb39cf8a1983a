"""analyzer/sandbox.py's pure parts: the default policy (no network ever:
debug info is fetched outside and handed in; the data dir hidden), the limits gdb's budget needs, and the
translation of paths inside back to the caller's."""

from analyzer.gdb import GdbBudget
from analyzer.sandbox import Limits, Sandbox, SandboxPolicy, analysis_sandbox


def test_no_network_even_with_debuginfod_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    p = SandboxPolicy.default(tmp_path / "data")
    assert not p.network and p.env == ()
    monkeypatch.setenv("DEBUGINFOD_URLS", "https://debuginfod.debian.net")
    p = SandboxPolicy.default(tmp_path / "data")  # coretriage.debuginfod fetches in the parent
    assert not p.network and p.env == ()


def test_the_data_dir_is_hidden_by_both_its_names(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert SandboxPolicy.default(tmp_path / "link").hide == (str(tmp_path / "link"), str(real))


def test_limits_never_below_what_gdb_is_allowed():
    b = analysis_sandbox(GdbBudget(timeout=3600, memory=16 << 30), SandboxPolicy())
    assert b.policy.limits.memory == 16 << 30 and b.policy.limits.cpu >= 3600
    small = analysis_sandbox(GdbBudget(timeout=5, memory=1 << 20), SandboxPolicy())
    assert small.policy.limits == Limits()  # the defaults stay when gdb's budget is smaller
    assert b.deadline > 3600


def test_paths_inside_are_translated_back_whole():
    b = Sandbox(SandboxPolicy(), "x:y")
    b._paths = [("/tmp/in/core", "/data/tmp/core-1/core"), ("/tmp/in/sysroot", "/data/spool/b 1/root")]
    assert b.outside("/tmp/in/sysroot/usr/lib/libc.so.6") == "/data/spool/b 1/root/usr/lib/libc.so.6"
    assert b.outside("/tmp/in/core") == "/data/tmp/core-1/core"
    assert b.outside("/tmp/in/core2") == "/tmp/in/core2"  # another file: not a prefix match
    assert b.outside("/tmp/in/sysroot/x is not the build that crashed") == \
        "/data/spool/b 1/root/x is not the build that crashed"
    assert b.outside("/usr/lib/x") == "/usr/lib/x"
