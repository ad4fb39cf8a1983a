"""collector/hostsetup/corelimit.py: the core limit in /proc/PID/limits."""

from pathlib import Path

from builders import LIMITS, LIMITS_UNLIMITED_CORE
from collector.hostsetup.corelimit import CoreLimit, core_limit, parse_limits


# --- /proc/<pid>/limits ---------------------------------------------------------

def test_limits_parsing():
    limits = parse_limits(LIMITS)
    assert limits["Max core file size"] == CoreLimit(0, None)
    assert limits["Max stack size"] == CoreLimit(8388608, None)
    assert limits["Max nice priority"] == CoreLimit(0, 0)  # no units column
    assert "Limit" not in limits and len(limits) == 5
    assert core_limit(LIMITS_UNLIMITED_CORE) == CoreLimit(None, None)
    assert str(CoreLimit(0, None)) == "soft 0, hard unlimited"


def test_limits_of_this_process_match_getrlimit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    got = core_limit(Path("/proc/self/limits").read_text())
    inf = resource.RLIM_INFINITY
    assert got == CoreLimit(None if soft == inf else soft, None if hard == inf else hard)
