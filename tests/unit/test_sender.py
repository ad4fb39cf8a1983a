"""collector/sender.py: the sender's name, found in a /proc laid out as the
kernel lays it out (a directory tree of the same files)."""

from pathlib import Path

from collector.sender import nspid, sender_comm


def proc(base: Path, entries: dict[int, tuple[str, str, str]]) -> str:
    """{host pid: (NSpid values, cgroup, comm)}."""
    for pid, (ids, cgroup, comm) in entries.items():
        d = base / str(pid)
        d.mkdir(parents=True)
        (d / "status").write_text(f"Name:\t{comm}\nTgid:\t{pid}\nNSpid:\t{ids}\nUid:\t0\t0\t0\t0\n")
        (d / "cgroup").write_text(f"0::{cgroup}\n")
        (d / "comm").write_text(comm + "\n")
    (base / "self").mkdir(exist_ok=True)
    return str(base)


def test_nspid_line():
    assert nspid(b"Name:\tx\nNSpid:\t812\t7\n") == (812, 7)
    assert nspid(b"Name:\tx\n") is None and nspid(b"NSpid:\tseven\n") is None


def test_in_the_handlers_namespace_the_pid_is_the_entry(tmp_path):
    root = proc(tmp_path, {4242: ("4242", "/user.slice", "bash"), 500: ("500", "/x", "crashed")})
    assert sender_comm(4242, (500,), "0::/x", root) == "bash"
    assert sender_comm(4243, (500,), "0::/x", root) is None  # gone
    assert sender_comm(500, (500,), "0::/x", root) is None  # itself: the analysis says so


def test_in_a_container_the_pid_at_its_level_in_its_cgroup(tmp_path):
    a, b = "/system.slice/docker-aaa.scope", "/system.slice/docker-bbb.scope"
    root = proc(tmp_path, {
        900: ("900 1", a, "supervisord"), 901: ("901 7", a, "crashed"),
        950: ("950 1", b, "nginx"),  # another container's pid 1
        960: ("960 1", a, "other"),  # pid 1 of another pid namespace put in the same cgroup
        10: ("10", "/init.scope", "systemd"),
    })
    # two pid 1s in the container's cgroup: no guess
    assert sender_comm(1, (901, 7), f"0::{a}", root) is None
    (tmp_path / "960").joinpath("cgroup").write_text(f"0::{b}\n")
    assert sender_comm(1, (901, 7), f"0::{a}", root) == "supervisord"
    assert sender_comm(1, (901, 7), None, root) is None  # no cgroup to tell containers apart
    assert sender_comm(3, (901, 7), f"0::{a}", root) is None
