"""collector/hostsetup/checks.py: each of doctor's checks on given facts,
their rendering and the exit code."""

import dataclasses
import json

import pytest

from builders import APPORT_PATTERN
from collector.corepattern import classify
from collector.hostsetup import checks as C
from collector.hostsetup.clock import ClockStatus
from collector.hostsetup.containers import ContainerInfo
from collector.hostsetup.corelimit import CoreLimit
from collector.hostsetup.procfs import HostProcess

CID = "3f1c" + "a" * 60


def test_core_pattern_checks():
    apport = C.core_pattern_check(classify(APPORT_PATTERN), handler_exists=False, recorded=None)
    assert apport.status == C.FAIL and "Apport" in apport.message and "/usr/share/apport/apport" in apport.message
    assert "does not exist" in apport.message and apport.fix == C.FIX_REPLACE
    present = C.core_pattern_check(classify(APPORT_PATTERN), handler_exists=True, recorded=None)
    assert present.status == C.FAIL and "Apport" in present.message and present.fix == C.FIX_REPLACE
    sd = C.core_pattern_check(classify("|/lib/systemd/systemd-coredump %P"), handler_exists=True, recorded=None)
    assert sd.status == C.FAIL and "systemd-coredump" in sd.message
    ours = "|/d/bin/coretriage-core-handler %P"
    assert C.core_pattern_check(classify(ours, ours), handler_exists=True, recorded=ours).status == C.OK
    assert C.core_pattern_check(classify(ours), handler_exists=True, recorded=None).status == C.WARN
    gone = C.core_pattern_check(classify(ours, ours), handler_exists=False, recorded=ours)
    assert gone.status == C.FAIL and gone.fix == C.FIX_INSTALL
    f = C.core_pattern_check(classify("core"), handler_exists=None, recorded=None)
    assert f.status == C.WARN and "container" in f.message
    assert C.core_pattern_check(classify(""), handler_exists=None, recorded=None).status == C.FAIL


def _info(comm="bash", core=CoreLimit(0, None), caught=frozenset({17}), pid=4242):
    return HostProcess(pid=pid, comm=comm, core=core, caught=caught, nspid=(pid, 1))


def test_core_limit_zero_fails_for_file_patterns_and_warns_for_pipes():
    pipe, file = classify("|/h %P"), classify("core")
    assert C.daemon_limit_check("dockerd", [_info("dockerd")], file).status == C.FAIL
    w = C.daemon_limit_check("dockerd", [_info("dockerd")], pipe)
    assert w.status == C.WARN and "ignores it while core_pattern is a pipe" in w.message
    assert C.daemon_limit_check("dockerd", [_info("dockerd", CoreLimit(None, None))], file).status == C.OK
    assert C.daemon_limit_check("dockerd", [], pipe).status == C.WARN


def test_container_checks_shell_pid1():
    c = ContainerInfo(id=CID, name="sidekiq", pid=4242)
    by_name = {k.name: k for k in C.container_checks(c, _info(), classify("core"))}
    assert by_name["container sidekiq core limit"].status == C.FAIL
    pid1 = by_name["container sidekiq PID 1"]
    assert pid1.status == C.WARN and "bash" in pid1.message and "--init" in pid1.fix and "exec" in pid1.fix
    trap = C.container_checks(c, _info(caught=frozenset({15, 17}), core=CoreLimit(None, None)), classify("core"))
    assert [k.status for k in trap] == [C.OK, C.OK]
    with_init = C.container_checks(dataclasses.replace(c, init=True), _info(core=CoreLimit(None, None)), classify("core"))
    assert [k.status for k in with_init] == [C.OK, C.OK]
    tini = C.container_checks(c, _info(comm="docker-init", core=CoreLimit(None, None)), classify("core"))
    assert "init (docker-init)" in tini[1].message
    gone = C.container_checks(c, None, classify("core"))
    assert gone[0].status == C.WARN


@pytest.mark.parametrize("free, total, status", [
    (50 << 20, 100 << 30, C.FAIL),
    (500 << 20, 5 << 30, C.WARN),
    (4 << 30, 100 << 30, C.WARN),  # 4 %
    (10 << 30, 100 << 30, C.OK),
])
def test_free_space(free, total, status):
    assert C.free_space_check("/d", free, total).status == status


def test_suid_and_clock_checks():
    assert C.suid_dumpable_check("0").status == C.WARN
    assert C.suid_dumpable_check("2").status == C.OK
    assert C.clock_check(ClockStatus(False, "adjtimex", "x")).status == C.WARN
    assert C.clock_check(ClockStatus(True, "timedatectl")).status == C.OK


def test_rendering_and_exit_code():
    checks = [C.Check("a", C.OK, "fine"), C.Check("b", C.WARN, "hmm", "do x"), C.Check("c", C.FAIL, "bad", "do y")]
    assert C.format_checks(checks).splitlines() == ["OK   a: fine", "WARN b: hmm — fix: do x",
                                                    "FAIL c: bad — fix: do y"]
    assert json.loads(C.checks_json(checks))[2] == {"name": "c", "status": "FAIL", "message": "bad", "fix": "do y"}
    assert C.exit_code(checks) == 1 and C.exit_code(checks[:2]) == 0
