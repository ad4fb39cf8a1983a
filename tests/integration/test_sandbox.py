"""analyzer/sandbox.py: the child it forks really is confined (asked of the
kernel, from inside), as root and as an unprivileged caller in a user
namespace; inputs only root may read reach it as copies; every way it can
fail is one line; and analysis through it finds what it found before."""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401  (the unprivileged caller below cannot read /root/.pyenv to import it)
import errno
import json
import os
import pwd
import resource
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from analyzer.analyze import analyze_core
from analyzer.sandbox import Limits, Sandbox, SandboxError, SandboxPolicy
from analyzer.signature import generate

PRELOAD = ("encodings.idna",)  # socket.create_connection needs it; loaded before the sandbox narrows


# -- handlers run inside (found by name in this module) ---------------------------

def inside(_state, job: dict) -> dict:
    out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "hostname": socket.gethostname(),
           "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
           "limits": {name: resource.getrlimit(getattr(resource, name))[1]
                      for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")},
           "env": dict(os.environ), "tmp": sorted(os.listdir("/tmp")), "files": {}, "writes": {}}
    for path in job.get("read", []):
        p = Path(path)
        try:
            out["files"][path] = os.readlink(p) if p.is_symlink() else p.read_text()
        except OSError as exc:
            out["files"][path] = errno.errorcode[exc.errno]
    for path in job.get("write", []):
        try:
            Path(path).write_text("x")
            out["writes"][path] = "written"
        except OSError as exc:
            out["writes"][path] = errno.errorcode[exc.errno]
    if job.get("peek"):  # another process of the sandbox user (gdb) reading this one's memory
        import subprocess

        peek = subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True)
        out["peek"] = peek.returncode == 0 and len(peek.stdout) > 0
    if "port" in job:
        try:
            socket.create_connection(("127.0.0.1", job["port"]), timeout=2).close()
            out["connect"] = "connected"
        except OSError as exc:
            out["connect"] = errno.errorcode.get(exc.errno, str(exc))
    return out


def fails(_state, _job):
    raise ValueError("broken\nhandler")


def dies(_state, _job):
    os._exit(3)  # (SIGKILL from inside would not do: the handler is its namespace's PID 1)


def hangs(_state, _job):
    time.sleep(60)


def box(policy: SandboxPolicy, handler: str = "inside", **kw) -> Sandbox:
    return Sandbox(policy, f"{__name__}:{handler}", **kw)


@pytest.fixture
def policy(tmp_path) -> SandboxPolicy:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "coretriage.db").write_text("every crash")
    return SandboxPolicy.default(data, data / "tmp")


def ns(pid="self") -> dict:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("mnt", "net", "ipc", "uts", "pid")}


def test_as_root_the_child_is_the_sandbox_user_with_nothing_else(policy, tmp_path):
    db = open(Path(policy.hide[0]) / "coretriage.db")  # open in the caller: must not be inherited
    try:
        b = box(policy).start()
        out = b.call({"read": [db.name], "peek": True})
    finally:
        db.close()
    facts = b.facts["self"]
    user = pwd.getpwnam(policy.user or "coretriage-sandbox") if _has("coretriage-sandbox") else pwd.getpwnam("nobody")
    assert out["uid"] == user.pw_uid != 0 and out["gid"] == user.pw_gid and out["groups"] == []
    assert facts["CapEff"] == facts["CapPrm"] == facts["CapBnd"] == facts["CapAmb"] == "0000000000000000"
    assert facts["NoNewPrivs"] == "1"
    assert all(facts["ns"][n] != mine for n, mine in ns().items())
    assert out["hostname"] == "coretriage-sandbox"
    assert len(out["fds"]) == 6  # stdio (/dev/null), the job pipe, the answer pipe, listdir's own
    assert out["files"][db.name] == "ENOENT"  # the data dir is not there at all
    assert out["peek"] is False  # the sandbox's Python (a copy of the caller's memory) is not readable by gdb
    limits = Limits()
    assert out["limits"] == {"RLIMIT_AS": limits.memory, "RLIMIT_CPU": limits.cpu, "RLIMIT_FSIZE": limits.file_size,
                             "RLIMIT_NOFILE": limits.open_files, "RLIMIT_CORE": 0}
    assert out["env"]["HOME"] == out["env"]["TMPDIR"] == "/tmp/work"
    assert out["tmp"] == ["in", "work"]
    assert not list((Path(policy.scratch_parent)).iterdir())  # the scratch dir is gone


def _has(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def test_inputs_only_root_can_read_arrive_as_read_only_copies(policy, tmp_path):
    tree = tmp_path / "root"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib/libc.so.6").write_text("libc bytes")
    (tree / "lib/libc.so.6").chmod(0o600)
    (tree / "lib/link").symlink_to("libc.so.6")
    tree.chmod(0o700)
    core = tmp_path / "core"
    core.write_text("core bytes")
    core.chmod(0o600)
    b = box(policy).start()
    core_in, tree_in = b.stage_file(core, "core"), b.stage_tree(tree, "sysroot")
    out = b.call({"read": [core_in, f"{tree_in}/lib/libc.so.6", f"{tree_in}/lib/link"],
                  "write": [core_in, f"{tree_in}/lib/new", "/tmp/work/mine"]})
    files, writes = out["files"], out["writes"]
    assert files[core_in] == "core bytes" and files[f"{tree_in}/lib/libc.so.6"] == "libc bytes"
    assert files[f"{tree_in}/lib/link"] == "libc.so.6"
    assert writes == {core_in: "EROFS", f"{tree_in}/lib/new": "EROFS", "/tmp/work/mine": "written"}
    assert b.outside(f"{tree_in}/lib/libc.so.6") == str(tree / "lib/libc.so.6")
    assert b.outside(f"no such file {core_in}") == f"no such file {core}"
    assert stat.S_IMODE(core.stat().st_mode) == 0o600  # the caller's files keep their modes


def test_no_network_even_with_debuginfod_configured(tmp_path, monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
        out = box(SandboxPolicy.default(tmp_path / "d")).start().call({"port": port})
        assert out["connect"] in ("ENETUNREACH", "ECONNREFUSED") and "DEBUGINFOD_URLS" not in out["env"]

        # debug info is fetched by the parent (coretriage.debuginfod) and handed in
        monkeypatch.setenv("DEBUGINFOD_URLS", f"http://127.0.0.1:{port}/")
        policy = SandboxPolicy.default(tmp_path / "d")
        assert not policy.network
        out = box(policy).start().call({"port": port})
        assert out["connect"] in ("ENETUNREACH", "ECONNREFUSED") and "DEBUGINFOD_URLS" not in out["env"]
        # an explicit policy may still keep the network: the namespace is what it says
        out = box(SandboxPolicy(network=True)).start().call({"port": port})
        assert out["connect"] == "connected"
    finally:
        srv.close()


@pytest.fixture
def nobody_dir():
    """A directory the unprivileged caller may make its scratch dirs in."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="coretriage-test-", dir="/var/tmp"))
    os.chown(d, 65534, 65534)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(fn, dumpable: bool = True) -> dict:
    """Run ``fn`` in a forked process that is an ordinary user: uid nobody, no
    capabilities (its code is already imported: nobody cannot read /root)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            if dumpable:  # as a user's own process is (changing uid cleared it)
                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
            try:
                result = {"ok": fn()}
            except Exception as exc:  # noqa: BLE001
                result = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_an_unprivileged_caller_gets_the_same_sandbox_in_a_user_namespace(nobody_dir):
    scratch = nobody_dir
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    policy = SandboxPolicy(scratch_parent=str(scratch))

    def run():
        b = box(policy).start()
        out = b.call({"port": srv.getsockname()[1], "write": ["/var/tmp/planted", "/tmp/work/ok"], "peek": True})
        return out, b.facts["self"]

    try:
        got = _as_nobody(run)
    finally:
        srv.close()
    assert "ok" in got, got
    out, facts = got["ok"]
    assert out["uid"] == 65534 and facts["CapEff"] == facts["CapBnd"] == "0000000000000000"
    assert facts["NoNewPrivs"] == "1"
    assert facts["ns"]["user"] != os.readlink("/proc/self/ns/user")
    assert all(facts["ns"][n] != mine for n, mine in ns().items())
    assert out["connect"] in ("ENETUNREACH", "ECONNREFUSED")
    assert out["writes"] == {"/var/tmp/planted": "EROFS", "/tmp/work/ok": "written"}
    assert out["peek"] is False


def test_every_failure_is_one_line(policy, tmp_path, nobody_dir):
    def one_line(exc_info, *words):
        text = str(exc_info.value)
        assert "\n" not in text and all(w in text for w in words), text

    with pytest.raises(SandboxError) as e:
        box(SandboxPolicy(user="no-such-user")).start()
    one_line(e, "no user no-such-user")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SandboxError) as e:
        box(SandboxPolicy(scratch_parent=str(a_file / "sub"))).start()
    one_line(e, "scratch directory")
    with pytest.raises(SandboxError) as e:
        box(policy, "fails").start().call({})
    one_line(e, "ValueError", "broken")
    with pytest.raises(SandboxError) as e:
        box(policy, "dies").start().call({})
    one_line(e, "died without an answer (exit status 3)")
    started = time.monotonic()
    with pytest.raises(SandboxError) as e:
        box(policy, "hangs", deadline=1.0).start().call({})
    one_line(e, "did not answer within 1 s")
    assert time.monotonic() - started < 10

    # a caller that may not build namespaces (here: not dumpable, so it cannot
    # write its uid_map) is refused, never analyzed unconfined
    got = _as_nobody(lambda: box(SandboxPolicy(scratch_parent=str(nobody_dir))).start().call({}), dumpable=False)
    assert got["error"].startswith("SandboxError: cannot build the analysis sandbox while creating its namespaces")
    assert "\n" not in got["error"]


def test_analysis_with_a_root_only_sysroot_finds_every_symbol(tmp_path, samples):
    """A bundle's root/ is root-only (0700 dirs, 0600 files) in a 0700 data
    dir: the sandbox user reads copies, and the answer names the originals."""
    s = samples("segv", 7)
    root = tmp_path / "data" / "spool" / "b1" / "root"
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    for path in (str(s.exe), libc, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy(path, dest)
        dest.chmod(0o600)
    (tmp_path / "data").chmod(0o700)
    a = analyze_core(s.core, sysroot=root, sandbox=SandboxPolicy.default(tmp_path / "data", tmp_path / "data/tmp"))
    found = {m.path: m.found_at for m in a.modules}
    assert found[str(s.exe)] == str(root / str(s.exe).lstrip("/"))
    assert found[libc] == str(root / libc.lstrip("/"))
    assert a.core == str(s.core)
    assert generate(a).text == s.expected_signature
    assert not list((tmp_path / "data/tmp").iterdir())  # no scratch left behind


def test_under_the_cli_umask_the_copies_are_still_readable_inside(tmp_path, samples):
    """The coretriage command runs under umask 077; the copies it stages for
    the sandbox user (the core, the executable, a root-only sysroot) must
    still be readable by that user."""
    s = samples("segv")
    root = tmp_path / "data" / "spool" / "b1" / "root"
    dest = root / str(s.exe).lstrip("/")
    dest.parent.mkdir(parents=True)
    shutil.copy(s.exe, dest)
    old = os.umask(0o077)
    try:
        a = analyze_core(s.core, s.exe, sysroot=root,
                         sandbox=SandboxPolicy.default(tmp_path / "data", tmp_path / "data/tmp"))
    finally:
        os.umask(old)
    assert not a.problems, a.problems
    assert generate(a).text == s.expected_signature


def test_a_program_in_a_directory_only_root_reads_is_copied_in_by_build_id(tmp_path, samples):
    """No --exe, no sysroot (a dump-dir core): the executable the core names
    sits where the sandbox user cannot look; the parent copies it in because
    its build-id is the one in the core, and the answer names the original."""
    s = samples("segv", 9)
    assert stat.S_IMODE(Path("/tmp/pytest-of-root").stat().st_mode) & 0o005 == 0  # root-only, as tmp_path is
    a = analyze_core(s.core)
    exe = next(m for m in a.modules if m.path == str(s.exe))
    assert exe.found_at == str(s.exe) and exe.symbols == "debug"
    assert generate(a).text == s.expected_signature


def test_a_world_readable_sysroot_is_used_where_it_is_and_a_private_one_copied(policy, tmp_path):
    b = box(policy).start()
    try:
        assert b.stage_tree("/usr/lib", "host") == "/usr/lib"  # no copy of a whole host tree
        private = tmp_path / "root"
        (private / "lib").mkdir(parents=True)
        assert b.stage_tree(private, "private") == "/tmp/in/private"
        assert not b.visible(Path(policy.hide[0]))  # the data dir never
    finally:
        b.close()


def mounts(_state, _job) -> dict:
    top = {}  # the last mount at each point covers those before it
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        top[fields[4]] = (fields[5].split(",")[0], fields[fields.index("-") + 1])
    return {"writable": [p for p, (mode, fstype) in top.items() if mode == "rw" and fstype != "nsfs"],
            "write": inside(None, {"write": ["/var/tmp/planted", "/tmp/in/x", "/tmp/work/ok"]})["writes"]}


def test_without_mount_setattr_each_mount_is_remounted_read_only(policy, nobody_dir, monkeypatch):
    """Kernels before 5.12: the same read-only view, one remount per mount."""
    import analyzer.sandbox as sandbox

    monkeypatch.setattr(sandbox, "SYS_MOUNT_SETATTR", 1_000_000)  # ENOSYS, in the forked child too
    as_root = box(policy, "mounts").start().call({})
    as_nobody = _as_nobody(lambda: box(SandboxPolicy(scratch_parent=str(nobody_dir)), "mounts").start().call({}))
    for got in (as_root, as_nobody["ok"]):
        assert got["write"] == {"/var/tmp/planted": "EROFS", "/tmp/in/x": "EROFS", "/tmp/work/ok": "written"}
    assert as_root["writable"] == ["/tmp"]
    # and for nobody, what it cannot reach (the next test), e.g. the overlays of containers running on this host
    assert "/tmp" in as_nobody["ok"]["writable"] and set(as_nobody["ok"]["writable"]) - {"/tmp"} <= _out_of_reach()


def _out_of_reach() -> set[str]:
    """This host's mount points that an ordinary user cannot reach."""
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}

    def unreachable():
        out = []
        for point in points:
            try:
                os.stat(point)
            except PermissionError:
                out.append(point)
            except OSError:
                pass
        return out
    return set(_as_nobody(unreachable)["ok"])


def test_without_mount_setattr_a_mount_the_caller_cannot_reach_is_left_alone(policy, nobody_dir, monkeypatch):
    """A Docker host's container overlays sit under /var/lib/docker (0710):
    an unprivileged caller can neither reach nor remount them, and its
    sandbox must still be built."""
    import subprocess
    import tempfile

    import analyzer.sandbox as sandbox

    monkeypatch.setattr(sandbox, "SYS_MOUNT_SETATTR", 1_000_000)
    private = Path(tempfile.mkdtemp(prefix="ct-private-", dir="/var/tmp"))
    os.chmod(private, 0o700)
    (private / "merged").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(private / "merged")], check=True)
    try:
        got = _as_nobody(lambda: box(SandboxPolicy(scratch_parent=str(nobody_dir)), "mounts").start().call({}))
        assert "ok" in got, got
        # still read-write, and out of the sandbox's reach as it was out of its caller's
        assert got["ok"]["write"]["/tmp/work/ok"] == "written"
        assert {"/tmp", str(private / "merged")} <= set(got["ok"]["writable"])
        assert set(got["ok"]["writable"]) - {"/tmp"} <= _out_of_reach()  # (other containers' overlays, too)
    finally:
        subprocess.run(["umount", str(private / "merged")], check=False)
        shutil.rmtree(private, ignore_errors=True)


def test_the_parent_gives_no_host_file_from_the_data_dir_and_opens_no_device(tmp_path):
    """What a hostile core can make the parent do through the request
    channel: a file under the hidden data dir (reached directly, through a
    symlink or through "..") is not given, nor is a device."""
    from analyzer import elfid
    from analyzer.analyze import _grant_host_file

    data = tmp_path / "data"
    data.mkdir()
    lib = data / "files" / "lib.so"
    lib.parent.mkdir()
    shutil.copy("/usr/lib/x86_64-linux-gnu/libc.so.6", lib)
    fd = os.open(lib, os.O_RDONLY)
    try:
        build = elfid.build_id(elfid.fd_reader(fd))
    finally:
        os.close(fd)
    assert build
    (tmp_path / "way-in").symlink_to(data)
    box = Sandbox(SandboxPolicy.default(data, tmp_path / "scratch"), "analyzer.analyze:_job",
                  "analyzer.gdb:EarlyGdb", (10.0, 1 << 30))
    try:
        for path in (str(lib), str(tmp_path / "way-in" / "files" / "lib.so"),
                     str(tmp_path / "way-in/../data/files/lib.so")):
            assert _grant_host_file(box, {"host_file": path, "build_id": build}) is None, path
        # a device gives nothing (that it is not even opened is the O_PATH look, not observable here)
        assert _grant_host_file(box, {"host_file": "/dev/null", "build_id": build}) is None
        assert _grant_host_file(box, {"host_file": "/dev/zero", "build_id": None}) is None
    finally:
        box.close()


def test_a_caller_that_is_pid_1_gets_its_sandbox(tmp_path):
    # a worker in a container without --init is PID 1: its sandbox's parent is
    # pid 1 from the start, which is not "the caller is gone"
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    script = ("import sys, json; sys.path[:0] = sys.argv[1:]\n"
              "from analyzer.sandbox import Sandbox, SandboxPolicy\n"
              "import os; from pathlib import Path\n"
              f"box = Sandbox(SandboxPolicy.default(Path({str(data)!r}), Path({str(data / 'tmp')!r})), "
              "'test_sandbox:inside')\n"
              "print(json.dumps({'pid': os.getpid(), 'uid': box.call({})['uid']}))\n")
    here = str(Path(__file__).parent)
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script, root, here],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.splitlines()[-1])
    assert answer["pid"] == 1 and answer["uid"] != 0
