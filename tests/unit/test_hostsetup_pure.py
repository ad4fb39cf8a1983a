"""host-setup without touching the host: parsing, classifying, rendering and
the checks, then install/uninstall/doctor against fake /proc and root trees."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path

import pytest

from collector.hostsetup import checks as C
from collector.hostsetup import record
from collector.hostsetup.clock import STA_UNSYNC, TIME_ERROR, ClockStatus, from_adjtimex, parse_timedatectl
from collector.hostsetup.containers import ContainerInfo, container_id_from_cgroup, parse_docker_inspect
from collector.corepattern import ABRT, APPORT, CORETRIAGE, MAX_PATTERN, SYSTEMD_COREDUMP, classify, plan_core_pattern
from collector.hostsetup.daemonjson import CORE_ULIMIT, merge_core_ulimit
from collector.hostsetup.doctor import run_checks
from collector.hostsetup.errors import DaemonJsonError, HostSetupError, OtherHandlerError
from collector.hostsetup.install import install, uninstall
from collector.hostsetup.corelimit import CoreLimit, core_limit, parse_limits
from collector.hostsetup.procfs import HostProcess, caught_signals
from collector.hostsetup.render import (TEMPLATES, collector_unit, limitcore_dropin, parse_sysctl_conf, sysctl_conf,
                              systemd_quote, wrapper_script)

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max open files            1048576              1048576              files     
Max nice priority         0                    0                    
"""
LIMITS_UNLIMITED_CORE = LIMITS.replace("Max core file size        0   ", "Max core file size        unlimited")
CID = "3f1c" + "a" * 60
HANDLER = ["/usr/bin/python3", "-m", "collector.handler", "--data-dir", "/var/lib/coretriage",
           "%P", "%i", "%s", "%t", "%u", "%g", "%d", "%E", "%e"]
APPORT_PATTERN = "|/usr/share/apport/apport %p %s %c %d %P %E"


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


def test_wrapper_script_passes_the_kernel_arguments_through(tmp_path):
    script = tmp_path / "w"
    script.write_text(wrapper_script(["/usr/bin/printf", "%s|", "a b", "it's"]))
    script.chmod(0o755)
    out = subprocess.run([str(script), "1234", "x y"], capture_output=True, text=True, check=True).stdout
    assert out == "a b|it's|1234|x y|"
    assert script.read_text().startswith("#!/bin/sh\n")


# --- daemon.json -------------------------------------------------------------------

DAEMON = {"log-driver": "json-file", "log-opts": {"max-size": "10m"},
          "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}


def test_daemon_json_merge_keeps_everything():
    merged = merge_core_ulimit(json.dumps(DAEMON))
    got = json.loads(merged.text)
    assert merged.changed and list(got) == list(DAEMON)
    assert got["log-opts"] == {"max-size": "10m"}
    assert got["default-ulimits"] == {"nofile": DAEMON["default-ulimits"]["nofile"], "core": CORE_ULIMIT}


def test_daemon_json_created_when_missing_and_untouched_when_done():
    assert json.loads(merge_core_ulimit(None).text) == {"default-ulimits": {"core": CORE_ULIMIT}}
    done = merge_core_ulimit(json.dumps(DAEMON)).text
    again = merge_core_ulimit(done)
    assert not again.changed and again.text == done


@pytest.mark.parametrize("text, match", [
    ('{"log-driver": "json-file",}', "not valid JSON .* line 1"),
    ('["a"]', "JSON list, not an object"),
    ('{"default-ulimits": ["core"]}', '"default-ulimits" is not an object'),
])
def test_daemon_json_refused(text, match):
    with pytest.raises(DaemonJsonError, match=match):
        merge_core_ulimit(text, where="/etc/docker/daemon.json")


# --- rendered files ----------------------------------------------------------------

def test_sysctl_file_round_trips():
    pattern = "|/var/lib/coretriage/bin/coretriage-core-handler %P %i %s"
    text = sysctl_conf(pattern, 16)
    assert parse_sysctl_conf(text) == {"kernel.core_pattern": pattern, "kernel.core_pipe_limit": "16"}
    assert "@CORE" not in text


def test_dropin_and_unit():
    assert "[Service]\nLimitCORE=infinity\n" in limitcore_dropin()
    unit = collector_unit("/opt/ct/.venv/bin/python", Path("/srv/core dumps/100%"))
    assert 'ExecStart=/opt/ct/.venv/bin/python -m coretriage.cli --data-dir "/srv/core dumps/100%%" ' \
           'collector run\n' in unit
    assert "WantedBy=multi-user.target" in unit and "@" not in unit


def test_systemd_quoting():
    assert systemd_quote("/plain/path") == "/plain/path"
    assert systemd_quote('a "b"') == '"a \\"b\\""'
    assert systemd_quote("$HOME") == '"$$HOME"'


def test_every_template_placeholder_is_filled():
    names = sorted(p.name for p in files(TEMPLATES).iterdir())
    assert {"50-coretriage.conf.in", "limitcore.conf", "coretriage-collector.service.in",
            "coretriage-core-handler.in"} <= set(names)
    for text in (sysctl_conf("|/x %P"), limitcore_dropin(), collector_unit("/p", Path("/d")),
                 wrapper_script(["/x"])):
        assert "@" not in text.replace('"$@"', "")


# --- containers, clock, status ---------------------------------------------------------

def test_container_id_from_cgroup_both_drivers():
    assert container_id_from_cgroup(f"0::/docker/{CID}\n") == CID
    assert container_id_from_cgroup(f"0::/system.slice/docker-{CID}.scope\n") == CID
    assert container_id_from_cgroup(f"12:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n") == CID
    assert container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") is None
    assert container_id_from_cgroup("0::/\n") is None


def test_docker_inspect_parsing():
    text = json.dumps([
        {"Id": CID, "Name": "/haproxy", "State": {"Running": True, "Pid": 4242},
         "HostConfig": {"Init": None}, "Config": {"Image": "haproxy:2.6"}},
        {"Id": "b" * 64, "Name": "/worker", "State": {"Running": True, "Pid": 4343}, "HostConfig": {"Init": True}},
        {"Id": "c" * 64, "Name": "/gone", "State": {"Running": False, "Pid": 0}},
    ])
    got = parse_docker_inspect(text)
    assert [(c.name, c.pid, c.init, c.image) for c in got] == [("haproxy", 4242, None, "haproxy:2.6"),
                                                             ("worker", 4343, True, "")]


def test_sigcgt_mask():
    assert caught_signals("0000000000010000") == {17}  # bash as PID 1: SIGCHLD only
    assert caught_signals("0000000000014000") == {15, 17}  # with `trap ... TERM`


def test_clock_parsing():
    assert parse_timedatectl("NTPSynchronized=yes\n") is True
    assert parse_timedatectl("NTPSynchronized=no\n") is False
    assert parse_timedatectl("") is None
    assert from_adjtimex(TIME_ERROR, STA_UNSYNC).synchronised is False
    assert from_adjtimex(0, STA_UNSYNC).synchronised is False
    assert from_adjtimex(0, 0x2001).synchronised is True  # TIME_OK, STA_PLL | STA_NANO


# --- checks ------------------------------------------------------------------------

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


# --- fake trees: install, uninstall, doctor ------------------------------------------------

def make_proc(base: Path, *, core_pattern="core", pipe_limit="0", suid="0",
              processes: dict[int, dict] | None = None) -> Path:
    proc = base / "proc"
    for key, value in (("kernel/core_pattern", core_pattern), ("kernel/core_pipe_limit", pipe_limit),
                       ("fs/suid_dumpable", suid)):
        (proc / "sys" / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / "sys" / key).write_text(value + "\n")
    for pid, p in {1: {"comm": "init"}, **(processes or {})}.items():
        d = proc / str(pid)
        d.mkdir(parents=True)
        (d / "comm").write_text(p["comm"] + "\n")
        (d / "limits").write_text(p.get("limits", LIMITS_UNLIMITED_CORE))
        nspid = "\t".join(str(n) for n in p.get("nspid", (pid,)))
        (d / "status").write_text(f"Name:\t{p['comm']}\nPPid:\t1\nNSpid:\t{nspid}\nSigCgt:\t{p.get('sigcgt', '0')}\n")
        (d / "cgroup").write_text(p.get("cgroup", "0::/\n"))
        (d / "cmdline").write_text("\0".join(p.get("cmdline", [p["comm"]])) + "\0")
    return proc


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for directories)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            out[os.path.relpath(os.path.join(dirpath, n), root)] = None
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


@pytest.fixture
def short_tmp():
    """A short directory: pytest's tmp_path is long enough to push a handler
    command past core_pattern's 127 characters."""
    d = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    yield d
    shutil.rmtree(d)


@pytest.fixture
def host(short_tmp):
    tmp_path = short_tmp
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_text(json.dumps(DAEMON, indent=4) + "\n")
    return tmp_path, root


def handler_argv(data: Path) -> list[str]:
    return ["/usr/bin/python3", "-m", "collector.handler", "--data-dir", str(data), *HANDLER[5:]]


def test_install_then_uninstall_leaves_no_trace(host):
    base, root = host
    proc = make_proc(base)
    data = base / "data"
    before_root, before_proc = tree(root), tree(proc)
    report = install(data, handler_argv(data), root=root, proc=proc, python="/opt/ct/bin/python")
    assert (proc / "sys/kernel/core_pattern").read_text() == report.core_pattern + "\n"
    assert report.core_pattern.startswith("|/usr/bin/python3 -m collector.handler")
    assert (proc / "sys/kernel/core_pipe_limit").read_text() == "16\n"
    assert report.previous_core_pattern == "core" and report.replaced_handler is None
    assert any("restart dockerd" in s or "restart containerd and dockerd" in s for s in report.next_steps)
    daemon = json.loads((root / "etc/docker/daemon.json").read_text())
    assert daemon["default-ulimits"]["core"] == CORE_ULIMIT and daemon["log-opts"] == {"max-size": "10m"}
    assert (root / "etc/docker/daemon.json.coretriage-backup").read_bytes() == before_root["etc/docker/daemon.json"]
    assert parse_sysctl_conf((root / "etc/sysctl.d/50-coretriage.conf").read_text())["kernel.core_pattern"] \
        == report.core_pattern
    assert "--data-dir " + str(data) in (root / "etc/systemd/system/coretriage-collector.service").read_text()
    rec = json.loads((data / "host-setup.json").read_text())
    assert {s["key"]: s["previous"] for s in rec["sysctls"]} == {"kernel.core_pattern": "core",
                                                                  "kernel.core_pipe_limit": "0"}
    assert (data / "host-setup.json").stat().st_mode & 0o777 == 0o600

    undone = uninstall(data, root=root, proc=proc)
    assert not undone.left and undone.record is None
    assert tree(root) == before_root and tree(proc) == before_proc
    assert not data.exists()


def test_second_install_keeps_the_first_previous_values(host):
    base, root = host
    proc = make_proc(base, core_pattern="/var/crash/core.%p", pipe_limit="4")
    data = base / "data"
    before_root, before_proc = tree(root), tree(proc)
    install(data, handler_argv(data), root=root, proc=proc)
    second = install(data, handler_argv(data)[:-2], root=root, proc=proc)  # a different command
    assert second.previous_core_pattern.startswith("|/usr/bin/python3")
    rec = record.load(data)
    assert rec.sysctl("kernel.core_pattern").previous == "/var/crash/core.%p"
    assert rec.sysctl("kernel.core_pattern").installed == second.core_pattern
    assert rec.sysctl("kernel.core_pipe_limit").previous == "4"
    backup = rec.file(str(root / "etc/docker/daemon.json.coretriage-backup"))
    assert not backup.previous.exists
    assert (root / "etc/docker/daemon.json.coretriage-backup").read_bytes() == before_root["etc/docker/daemon.json"]
    assert len(rec.history) == 2
    third = install(data, handler_argv(data)[:-2], root=root, proc=proc)
    assert not any("created" in c or "updated" in c for c in third.changes)
    uninstall(data, root=root, proc=proc)
    assert tree(root) == before_root and tree(proc) == before_proc


def test_long_command_installs_a_root_owned_wrapper(host):
    base, root = host
    proc = make_proc(base)
    data = base / ("d" * 50)
    argv = handler_argv(data)
    report = install(data, argv, root=root, proc=proc)
    wrapper = data / "bin/coretriage-core-handler"
    assert report.wrapper == wrapper and report.core_pattern == f"|{wrapper} " + " ".join(HANDLER[5:])
    st = wrapper.stat()
    assert st.st_mode & 0o777 == 0o755 and st.st_uid == 0
    assert f"exec /usr/bin/python3 -m collector.handler --data-dir {data} \"$@\"" in wrapper.read_text()
    uninstall(data, root=root, proc=proc)
    assert not data.exists()


def test_missing_daemon_json_is_created_and_removed_again(short_tmp):
    tmp_path = short_tmp
    root = tmp_path / "root"
    root.mkdir()
    proc = make_proc(tmp_path)
    install(tmp_path / "data", handler_argv(tmp_path / "data"), root=root, proc=proc)
    assert json.loads((root / "etc/docker/daemon.json").read_text()) == {"default-ulimits": {"core": CORE_ULIMIT}}
    assert not (root / "etc/docker/daemon.json.coretriage-backup").exists()
    uninstall(tmp_path / "data", root=root, proc=proc)
    assert tree(root) == {}


def test_invalid_daemon_json_refuses_before_changing_anything(host):
    base, root = host
    (root / "etc/docker/daemon.json").write_text('{"log-driver": "json-file",,}')
    proc = make_proc(base)
    before = tree(base)
    with pytest.raises(DaemonJsonError, match="daemon.json is not valid JSON"):
        install(base / "data", handler_argv(base / "data"), root=root, proc=proc)
    assert tree(base) == before


def test_other_handler_needs_replace_and_comes_back(host):
    base, root = host
    proc = make_proc(base, core_pattern=APPORT_PATTERN)
    data = base / "data"
    before = tree(base)
    with pytest.raises(OtherHandlerError, match=r"Apport \(/usr/share/apport/apport\).*--replace"):
        install(data, handler_argv(data), root=root, proc=proc)
    assert tree(base) == before
    report = install(data, handler_argv(data), root=root, proc=proc, replace_existing=True)
    assert report.replaced_handler == "Apport (/usr/share/apport/apport)"
    uninstall(data, root=root, proc=proc)
    assert (proc / "sys/kernel/core_pattern").read_text() == APPORT_PATTERN + "\n"
    assert tree(base) == before


def test_uninstall_leaves_what_someone_else_changed_unless_forced(host):
    base, root = host
    proc = make_proc(base)
    data = base / "data"
    install(data, handler_argv(data), root=root, proc=proc)
    (proc / "sys/kernel/core_pattern").write_text("|/lib/systemd/systemd-coredump %P\n")
    undone = uninstall(data, root=root, proc=proc)
    assert len(undone.left) == 1 and "kernel.core_pattern" in undone.left[0]
    assert (proc / "sys/kernel/core_pattern").read_text() == "|/lib/systemd/systemd-coredump %P\n"
    assert (root / "etc/docker/daemon.json.coretriage-backup").exists() is False
    assert undone.record == data / "host-setup.json" and record.load(data).sysctls[0].key == "kernel.core_pattern"
    forced = uninstall(data, root=root, proc=proc, force=True)
    assert not forced.left and (proc / "sys/kernel/core_pattern").read_text() == "core\n"
    assert not data.exists()


def test_uninstall_without_a_record(tmp_path):
    with pytest.raises(HostSetupError, match="nothing to uninstall"):
        uninstall(tmp_path / "data", root=tmp_path, proc=make_proc(tmp_path))


def test_wrapper_in_a_world_writable_directory_is_refused(short_tmp):
    tmp_path = short_tmp
    unsafe = tmp_path / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    data = unsafe / ("d" * 40)
    with pytest.raises(HostSetupError, match="writable by group or others"):
        install(data, handler_argv(data), root=tmp_path / "root", proc=make_proc(tmp_path))


def test_a_handler_others_can_replace_is_reported(short_tmp):
    handler = short_tmp / "handler"
    handler.write_text("#!/bin/sh\ncat >/dev/null\n")
    handler.chmod(0o757)
    report = install(short_tmp / "data", [str(handler), "%P"], root=short_tmp / "root", proc=make_proc(short_tmp))
    assert len(report.warnings) == 1 and "writable by group or others" in report.warnings[0]
    handler.chmod(0o755)
    again = install(short_tmp / "data", [str(handler), "%P"], root=short_tmp / "root", proc=short_tmp / "proc")
    assert again.warnings == ()


def test_doctor_on_a_fake_host(short_tmp):
    tmp_path = short_tmp
    data = tmp_path / "data"
    processes = {
        100: {"comm": "dockerd", "limits": LIMITS},
        101: {"comm": "containerd"},
        200: {"comm": "bash", "limits": LIMITS, "nspid": (200, 1), "sigcgt": "0000000000010000",
              "cgroup": f"0::/system.slice/docker-{CID}.scope\n"},
        201: {"comm": "ruby", "nspid": (201, 7), "cgroup": f"0::/system.slice/docker-{CID}.scope\n"},
        300: {"comm": "docker-init", "nspid": (300, 1), "cgroup": f"0::/docker/{'e' * 64}\n"},
    }
    proc = make_proc(tmp_path, core_pattern=APPORT_PATTERN, processes=processes)
    got = {c.name: c for c in run_checks(data, proc=proc, root=tmp_path / "root", docker=None,
                                         clock=lambda: ClockStatus(False, "adjtimex", "TIME_ERROR"))}
    assert got["core_pattern"].status == C.FAIL and "Apport" in got["core_pattern"].message
    assert "/usr/share/apport/apport" in got["core_pattern"].message
    assert got["dockerd core limit"].status == C.WARN  # pipe: the kernel ignores the limit
    assert got["containerd core limit"].status == C.OK
    assert got[f"container {CID[:12]} PID 1"].status == C.WARN
    assert got[f"container {CID[:12]} core limit"].status == C.WARN
    assert got[f"container {'e' * 12} PID 1"].status == C.OK
    assert got["suid_dumpable"].status == C.WARN and got["clock"].status == C.WARN
    assert got["free space"].status in (C.OK, C.WARN)
    assert C.exit_code(list(got.values())) == 1

    # after install (file pattern -> a zero limit would be a FAIL, now a pipe to coretriage)
    (proc / "sys/kernel/core_pattern").write_text("core\n")
    file_mode = {c.name: c for c in run_checks(data, proc=proc, root=tmp_path, docker=lambda: [], clock=None)}
    assert file_mode["dockerd core limit"].status == C.FAIL and file_mode["core_pattern"].status == C.WARN
    assert file_mode["containers"].message == "no running containers (docker inspect)"
    install(data, ["/bin/true", "%P"], root=tmp_path / "root", proc=proc)
    after = {c.name: c for c in run_checks(data, proc=proc, root=Path("/"), docker=None, clock=None)}
    assert after["core_pattern"].status == C.OK and after["core_pipe_limit"].status == C.OK


def test_doctor_uses_the_docker_answer(tmp_path):
    proc = make_proc(tmp_path, processes={500: {"comm": "sh", "nspid": (500, 1)}})
    docker = lambda: [ContainerInfo(id=CID, name="web", pid=500, init=None)]  # noqa: E731
    got = {c.name: c for c in run_checks(tmp_path / "d", proc=proc, docker=docker, clock=None)}
    assert got["container web PID 1"].status == C.WARN and "sh" in got["container web PID 1"].message
    assert "containers" not in got


def test_collector_unit_runs_the_socket_server_in_socket_mode():
    from pathlib import Path

    from collector.hostsetup.render import collector_unit

    assert "collector run --socket" in collector_unit("/usr/bin/python3", Path("/var/lib/coretriage"), socket=True)
    assert "--socket" not in collector_unit("/usr/bin/python3", Path("/var/lib/coretriage"))
