"""host-setup on the real kernel: kernel.core_pattern and core_pipe_limit are
really written (and always put back by the ``kernel`` fixture); /etc files go
to a temporary root. Needs root."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from collector.corepattern import pattern_lock
from collector.hostsetup import checks as C
from collector.hostsetup.containers import ContainerInfo
from collector.hostsetup.doctor import run_checks
from collector.hostsetup.errors import OtherHandlerError
from collector.hostsetup.install import install, uninstall

PROC_SYS = Path("/proc/sys/kernel")
APPORT_PATTERN = "|/usr/share/apport/apport %p %s %c %d %P %E"
DAEMON_JSON = {"log-driver": "json-file", "log-opts": {"max-size": "10m"},
               "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}
# Other test sessions on this host set core_pattern too; those that take
# pattern_lock do not overlap with us.


@pytest.fixture
def kernel():
    """Hold the core_pattern lock; put core_pattern and core_pipe_limit back afterwards, whatever happens."""
    if os.geteuid() != 0:
        pytest.fail("host-setup system tests write /proc/sys/kernel/core_pattern: run them as root")
    with pattern_lock():  # the lock install and uninstall take again (reentrant)
        saved = {name: (PROC_SYS / name).read_text() for name in ("core_pattern", "core_pipe_limit")}
        try:
            yield {k: v.rstrip("\n") for k, v in saved.items()}
        finally:
            for name, value in saved.items():
                (PROC_SYS / name).write_text(value)


@pytest.fixture
def short_tmp():
    """A root-only directory with a short path (core_pattern holds 127 characters)."""
    d = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    yield d
    shutil.rmtree(d)


def tree(root: Path) -> dict[str, tuple[bytes | None, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            out[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
    return out


def handler_script(base: Path) -> tuple[Path, Path]:
    """A pipe handler that keeps its arguments and the core: proof the kernel ran it."""
    out = base / "received"
    out.mkdir()
    script = base / "handler.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {out}/args.$$\ncat > {out}/core.$$\n')
    script.chmod(0o755)
    return script, out


def crash_sleep(core_limit: int = resource.RLIM_INFINITY) -> int:
    p = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: resource.setrlimit(
        resource.RLIMIT_CORE, (core_limit, core_limit)))
    time.sleep(0.1)
    p.send_signal(signal.SIGSEGV)
    assert p.wait(timeout=30) == -signal.SIGSEGV
    return p.pid


def received(out: Path, pid: int, timeout: float = 20.0) -> tuple[list[str], int]:
    """The args and core size a handler run got for ``pid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for args_file in out.glob("args.*"):
            args = args_file.read_text().splitlines()
            if str(pid) in args:
                core = out / args_file.name.replace("args", "core")
                return args, core.stat().st_size if core.exists() else 0
        time.sleep(0.1)
    raise AssertionError(f"the kernel never ran the handler for pid {pid}; got {sorted(os.listdir(out))}")


def test_install_and_uninstall_on_the_real_kernel(kernel, short_tmp):
    root = short_tmp / "root"
    (root / "etc/docker").mkdir(parents=True)
    original = json.dumps(DAEMON_JSON, indent=2).encode() + b"\n"
    (root / "etc/docker/daemon.json").write_bytes(original)
    (root / "etc/docker/daemon.json").chmod(0o600)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/redis.service").write_text("[Service]\nExecStart=/usr/bin/redis-server\n")
    script, out = handler_script(short_tmp)
    data = short_tmp / "data"
    argv = [str(script), "%P", "%i", "%s", "%t", "%u", "%g", "%d", "%E", "%e"]
    before = tree(root)

    report = install(data, argv, root=root)

    # the real kernel
    pattern = (PROC_SYS / "core_pattern").read_text().rstrip("\n")
    assert pattern.startswith("|") and pattern == report.core_pattern == "|" + " ".join(argv)
    assert pattern != kernel["core_pattern"] and report.previous_core_pattern == kernel["core_pattern"]
    assert (PROC_SYS / "core_pipe_limit").read_text() == "128\n"
    pid = crash_sleep()
    args, core_size = received(out, pid)
    assert args[0] == str(pid) and args[2] == str(signal.SIGSEGV) and args[-1] == "sleep"
    assert core_size > 0

    # the files under the temporary root
    etc = root / "etc"
    daemon = json.loads((etc / "docker/daemon.json").read_text())
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"] == {"max-size": "10m"}
    assert daemon["default-ulimits"] == {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536},
                                         "core": {"Name": "core", "Hard": -1, "Soft": -1}}
    assert (etc / "docker/daemon.json").stat().st_mode & 0o777 == 0o600
    assert (etc / "docker/daemon.json.coretriage-backup").read_bytes() == original
    sysctl = (etc / "sysctl.d/50-coretriage.conf").read_text()
    assert f"kernel.core_pattern = {pattern}\n" in sysctl and "kernel.core_pipe_limit = 128\n" in sysctl
    for unit in ("docker", "containerd"):
        assert "[Service]\nLimitCORE=infinity\n" in (etc / f"systemd/system/{unit}.service.d/coretriage.conf").read_text()
    service = (etc / "systemd/system/coretriage-collector.service").read_text()
    assert f"-m coretriage.cli --data-dir {data} collector run" in service
    assert (data / "host-setup.json").is_file()
    assert any("daemon-reload" in s for s in report.next_steps)  # not run: systemd is not PID 1 here

    # the kernel log's count of skipped crashes is not install's doing (and
    # this machine's tests skip some on purpose): test_sparse_giant_cores counts them
    got = {c.name: c for c in run_checks(data, kernel_log=None)}
    assert got["core_pattern"].status == C.OK, got["core_pattern"]
    assert got["core_pipe_limit"].status == C.OK

    undone = uninstall(data, root=root)
    assert not undone.left, undone.left
    assert (PROC_SYS / "core_pattern").read_text().rstrip("\n") == kernel["core_pattern"]
    assert (PROC_SYS / "core_pipe_limit").read_text().rstrip("\n") == kernel["core_pipe_limit"]
    assert tree(root) == before  # contents and modes
    assert not data.exists()


def test_a_long_command_runs_through_the_wrapper(kernel, short_tmp):
    script, out = handler_script(short_tmp)
    data = short_tmp / "data"
    fixed = [str(script), "--spool", str(short_tmp / "a directory with spaces" / ("x" * 60))]
    report = install(data, [*fixed, "%P", "%s", "%e"], root=short_tmp / "root")
    wrapper = data / "bin/coretriage-core-handler"
    assert report.wrapper == wrapper
    assert (PROC_SYS / "core_pattern").read_text() == f"|{wrapper} %P %s %e\n"
    pid = crash_sleep()
    args, core_size = received(out, pid)
    assert args == fixed[1:] + [str(pid), str(signal.SIGSEGV), "sleep"] and core_size > 0
    uninstall(data, root=short_tmp / "root")
    assert (PROC_SYS / "core_pattern").read_text().rstrip("\n") == kernel["core_pattern"]
    assert not data.exists() and not (short_tmp / "root").exists()


def test_the_kernel_ignores_a_zero_core_limit_for_pipes(kernel, short_tmp):
    """Why doctor only WARNs about a zero core limit while core_pattern is a pipe."""
    script, out = handler_script(short_tmp)
    (PROC_SYS / "core_pattern").write_text(f"|{script} %P %s\n")
    pid = crash_sleep(core_limit=0)
    args, core_size = received(out, pid)
    assert args == [str(pid), str(signal.SIGSEGV)] and core_size > 0


def test_apport_pattern_is_diagnosed_refused_replaced_and_given_back(kernel, short_tmp):
    assert not Path("/usr/share/apport/apport").exists(), "this test needs a host without Apport"
    (PROC_SYS / "core_pattern").write_text(APPORT_PATTERN + "\n")
    data = short_tmp / "data"

    got = {c.name: c for c in run_checks(data, clock=None)}
    cp = got["core_pattern"]
    assert cp.status == C.FAIL and "Apport" in cp.message and "/usr/share/apport/apport" in cp.message
    assert "does not exist" in cp.message and cp.fix == "coretriage host-setup install --replace"
    assert "FAIL core_pattern: " in C.format_checks(list(got.values()))
    assert C.exit_code(list(got.values())) == 1

    root = short_tmp / "root"
    argv = ["/bin/true", "%P"]
    with pytest.raises(OtherHandlerError, match=r"Apport \(/usr/share/apport/apport\)"):
        install(data, argv, root=root)
    assert (PROC_SYS / "core_pattern").read_text() == APPORT_PATTERN + "\n"
    assert not data.exists() and not root.exists()

    report = install(data, argv, root=root, replace_existing=True)
    assert report.replaced_handler == "Apport (/usr/share/apport/apport)"
    assert (PROC_SYS / "core_pattern").read_text() == "|/bin/true %P\n"
    assert {c.name: c for c in run_checks(data, clock=None)}["core_pattern"].status == C.OK
    uninstall(data, root=root)
    assert (PROC_SYS / "core_pattern").read_text() == APPORT_PATTERN + "\n"


@pytest.fixture
def pid1_shells():
    """Shells running as PID 1 of their own pid namespace, as in a container:
    one plain, one with a SIGTERM trap; both with a core limit of 0."""
    started = []

    def start(script: str) -> int:
        p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", script],
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
        started.append(p)
        deadline = time.monotonic() + 60  # generous: bash starting on a loaded machine
        while time.monotonic() < deadline:
            for child in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split():
                status = Path(f"/proc/{child}/status").read_text()
                nspid = next(l.split()[1:] for l in status.splitlines() if l.startswith("NSpid:"))
                sigcgt = next(l.split()[1] for l in status.splitlines() if l.startswith("SigCgt:"))
                if nspid[-1] == "1" and int(sigcgt, 16) & (1 << 16):  # bash has set up its handlers
                    return int(child)
            time.sleep(0.05)
        raise AssertionError(f"no PID 1 shell under unshare {p.pid}")

    yield start
    for p in started:
        for child in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split() if p.poll() is None else ():
            os.kill(int(child), signal.SIGKILL)  # PID 1 of the namespace: takes the namespace down
        p.wait(timeout=10)


def test_doctor_on_real_pid1_shells(kernel, pid1_shells, short_tmp):
    plain = pid1_shells("sleep 300; true")
    trapped = pid1_shells("trap 'kill $c' TERM; sleep 300 & c=$!; wait")
    docker = lambda: [ContainerInfo(id="a" * 64, name="sidekiq", pid=plain),  # noqa: E731
                      ContainerInfo(id="b" * 64, name="trapped", pid=trapped)]

    (PROC_SYS / "core_pattern").write_text("core\n")  # a file pattern: a zero core limit means no core
    got = {c.name: c for c in run_checks(short_tmp / "data", docker=docker, clock=None)}
    warn = got["container sidekiq PID 1"]
    assert warn.status == C.WARN and "bash" in warn.message and "SIGTERM" in warn.message
    assert "--init" in warn.fix
    assert got["container trapped PID 1"].status == C.OK
    limit = got["container sidekiq core limit"]
    assert limit.status == C.FAIL and "core size limit of 0" in limit.message
    assert got["free space"].status == C.OK
    assert "clock" not in got

    (PROC_SYS / "core_pattern").write_text("|/bin/true %P\n")  # a pipe: the kernel ignores the limit
    got = {c.name: c for c in run_checks(short_tmp / "data", docker=docker, clock=None)}
    limit = got["container sidekiq core limit"]
    assert limit.status == C.WARN and "ignores it while core_pattern is a pipe" in limit.message


def test_doctor_reads_the_real_clock_and_host(short_tmp):
    checks = run_checks(short_tmp / "data", docker=None)
    names = [c.name for c in checks]
    assert names[0] == "core_pattern" and "clock" in names and "suid_dumpable" in names
    clock = next(c for c in checks if c.name == "clock")
    assert clock.status in (C.OK, C.WARN) and ("adjtimex" in clock.message or "timedatectl" in clock.message)
    assert json.loads(C.checks_json(checks))[0]["name"] == "core_pattern"
