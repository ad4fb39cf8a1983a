"""collector/corepattern.py: the handler's core_pattern string, what a
core_pattern is and who owns it, and when a command needs a wrapper (the
127-byte rule). The lock is tested across processes in
tests/system/test_corepattern.py."""

import pytest

from builders import APPORT_PATTERN, HANDLER
from collector.corepattern import (ABRT, APPORT, CORETRIAGE, MAX_PATTERN, SYSTEMD_COREDUMP, PatternError, classify,
                                   core_pattern, plan_core_pattern)


def test_core_pattern_string():
    p = core_pattern("/opt/ct/bin/python", data_dir="/var/lib/coretriage")
    assert p == ("|/opt/ct/bin/python -I -m collector.handler -d /var/lib/coretriage "
                 "%P %i %I %s %t %u %g %d %F %E %e")
    with pytest.raises(PatternError):
        core_pattern("/opt/ct/bin/python", spool="/a dir/spool")  # the kernel cannot quote
    with pytest.raises(PatternError):
        core_pattern("python")
    with pytest.raises(PatternError):
        core_pattern("/opt/ct/bin/python", spool="/" + "x" * 80)  # the kernel would cut it


# --- core_pattern ----------------------------------------------------------------

@pytest.mark.parametrize("raw, kind, owner, handler", [
    (APPORT_PATTERN + "\n", "pipe", APPORT, "/usr/share/apport/apport"),
    ("|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E", "pipe", APPORT,
     "/usr/share/apport/apport"),
    ("|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h", "pipe", SYSTEMD_COREDUMP,
     "/lib/systemd/systemd-coredump"),
    ("|/usr/libexec/abrt-hook-ccpp %s %c %p %u %g %t e %P %I %h", "pipe", ABRT, "/usr/libexec/abrt-hook-ccpp"),
    ("|/usr/bin/abrt-dump %p", "pipe", ABRT, "/usr/bin/abrt-dump"),
    ("|/var/lib/coretriage/bin/coretriage-core-handler %P %i", "pipe", CORETRIAGE,
     "/var/lib/coretriage/bin/coretriage-core-handler"),
    ("|/opt/venv/bin/python -m collector.handler %P", "pipe", CORETRIAGE, "/opt/venv/bin/python"),
    ("|/bin/false", "pipe", None, "/bin/false"),
    ("@@/run/systemd/coredump", "socket", None, "/run/systemd/coredump"),
    ("core", "file", None, None),
    ("/var/crash/core.%e.%p", "file", None, None),
    ("\n", "empty", None, None),
])
def test_core_pattern_classification(raw, kind, owner, handler):
    p = classify(raw)
    assert (p.kind, p.owner, p.handler) == (kind, owner, handler)
    assert p.is_other_handler == (kind in ("pipe", "socket") and owner != CORETRIAGE)


def test_pipe_argv_is_split_on_spaces_like_the_kernel():
    p = classify("|/h  %P %i")
    assert p.argv == ("/h", "%P", "%i")


def test_recorded_pattern_is_ours_whatever_it_looks_like():
    assert classify("|/opt/x/handler %P", ours="|/opt/x/handler %P").owner == CORETRIAGE
    assert classify("|/opt/x/handler %P").owner is None


def test_apport_describe_names_it():
    assert classify(APPORT_PATTERN).describe() == "Apport (/usr/share/apport/apport)"


# --- the wrapper decision ----------------------------------------------------------

def test_short_command_goes_straight_into_core_pattern():
    plan = plan_core_pattern(HANDLER, "/var/lib/coretriage/bin/coretriage-core-handler")
    assert plan.pattern == "|" + " ".join(HANDLER) and plan.wrapper_command is None
    assert len(plan.pattern) <= MAX_PATTERN


def test_long_command_goes_through_a_wrapper():
    argv = ["/opt/some/very/long/path/to/a/virtualenv/of/coretriage/bin/python3.11", "-m", "collector.handler",
            "--data-dir", "/srv/storage/coretriage-data", *HANDLER[5:]]
    assert len("|" + " ".join(argv)) > MAX_PATTERN
    plan = plan_core_pattern(argv, "/srv/storage/coretriage-data/bin/coretriage-core-handler")
    assert plan.pattern == "|/srv/storage/coretriage-data/bin/coretriage-core-handler %P %i %s %t %u %g %d %E %e"
    assert plan.wrapper_command == tuple(argv[:5])
    assert "127" in plan.reason


def test_boundary_is_127_characters():
    for total in (MAX_PATTERN, MAX_PATTERN + 1):
        argv = ["/" + "x" * (total - 5), "%P"]  # "|" + path + " %P"
        assert len("|" + " ".join(argv)) == total
        plan = plan_core_pattern(argv, "/w")
        assert (plan.wrapper_command is None) == (total <= MAX_PATTERN)


def test_space_or_percent_in_a_fixed_argument_needs_a_wrapper():
    assert plan_core_pattern(["/h", "--data-dir", "/a b", "%P"], "/w").wrapper_command == ("/h", "--data-dir", "/a b")
    assert plan_core_pattern(["/h", "--data-dir", "/100%", "%P"], "/w").wrapper_command is not None


@pytest.mark.parametrize("argv, wrapper, match", [
    (["python3", "-m", "x", "%P"], "/w", "absolute"),
    ([], "/w", "empty"),
    (["/h", "%P", "a b"], "/w", "spaces"),
    (["/" + "x" * 200, *["%P"] * 70], "/w", "even with a wrapper"),
    (["/" + "x" * 200, "%P"], "/data dir/w", "wrapper path"),
])
def test_impossible_commands_are_refused(argv, wrapper, match):
    with pytest.raises(ValueError, match=match):
        plan_core_pattern(argv, wrapper)
