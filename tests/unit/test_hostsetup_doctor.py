"""collector/hostsetup/doctor.py against fake /proc and root trees."""

from pathlib import Path

from builders import APPORT_PATTERN, LIMITS, make_proc
from collector.hostsetup import checks as C
from collector.hostsetup.clock import ClockStatus
from collector.hostsetup.containers import ContainerInfo
from collector.hostsetup.doctor import run_checks
from collector.hostsetup.install import install

CID = "3f1c" + "a" * 60


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
    (tmp_path / "kmsg").write_text("6,1,1,-;an ordinary line\n")
    after = {c.name: c for c in run_checks(data, proc=proc, root=Path("/"), docker=None, clock=None,
                                           kernel_log=tmp_path / "kmsg")}
    assert after["core_pattern"].status == C.OK and after["core_pipe_limit"].status == C.OK


def test_doctor_uses_the_docker_answer(tmp_path):
    proc = make_proc(tmp_path, processes={500: {"comm": "sh", "nspid": (500, 1)}})
    docker = lambda: [ContainerInfo(id=CID, name="web", pid=500, init=None)]  # noqa: E731
    got = {c.name: c for c in run_checks(tmp_path / "d", proc=proc, docker=docker, clock=None)}
    assert got["container web PID 1"].status == C.WARN and "sh" in got["container web PID 1"].message
    assert "containers" not in got
