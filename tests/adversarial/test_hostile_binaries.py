"""Hostile ELF/DWARF/gdb scripts: a crashed program's own files are parsed by
gdb and pyelftools. Whatever they hold, the parsers run as the sandbox user
with no capabilities and NO_NEW_PRIVS, in namespaces of their own: no
network, a read-only file system, the data dir (database, spool, other
crashes) out of sight, writes only in a scratch dir. A binary's gdb scripts
never run, and a corrupt core is one line of error.

The confinement is observed from outside, on the real gdb while it runs
(/proc/<gdb>: status, namespaces, mounts, network), and the parsers are
guarded in the analyzing process: they refuse to run with root's rights.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import crashkit
from analyzer import analyze as analyze_module
from analyzer import elfinfo
from analyzer.problems import GDB_FAILED
from analyzer.sandbox import SANDBOX_USER, Sandbox

SCRIPT_EXIT = 7  # what the hostile scripts make gdb exit with
PRELOAD = ("encodings.idna",)  # the probe's socket code imports it lazily; the sandbox loads it first


@pytest.fixture(scope="module")
def sandbox_uid() -> int:
    from collector.hostsetup.install import ensure_sandbox_user

    ensure_sandbox_user(Path("/"))  # what `coretriage host-setup install` does
    return pwd.getpwnam(SANDBOX_USER).pw_uid


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A program whose binary carries a gdb script in .debug_gdb_scripts and
    has a <binary>-gdb.py beside it, each writing a marker and killing gdb;
    crashed for real (the kernel writes its core)."""
    work = tmp_path_factory.mktemp("hostile")
    os.chmod(work, 0o755)
    markers = Path("/var/tmp") / f"coretriage-hostile-{os.getpid()}"  # a place any user could write to
    markers.mkdir(mode=0o777, exist_ok=True)
    os.chmod(markers, 0o777)
    script = ["import os", f"open('{markers}/inline', 'w').write('ran')", f"os._exit({SCRIPT_EXIT})"]
    asm = "".join('".ascii \\"' + line + '\\\\n\\"\\n"\n' for line in script)
    source = work / "hostile.c"
    source.write_text(
        '#include <string.h>\n'
        'asm(".pushsection \\".debug_gdb_scripts\\", \\"MS\\",@progbits,1\\n"\n'
        '".byte 4\\n"\n'  # SECTION_SCRIPT_ID_PYTHON_TEXT
        '".ascii \\"gdb.inlined-script\\\\n\\"\\n"\n'
        + asm +
        '".byte 0\\n"\n'
        '".popsection\\n");\n'
        'static int parse(const char *s) { return (int)strlen(s); }\n'
        'int main(void) { return parse((const char *)0); }\n')
    exe = work / "hostile"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(exe), str(source)], check=True, capture_output=True)
    (work / "hostile-gdb.py").write_text(
        f"import os\nopen('{markers}/objfile', 'w').write('ran')\nos._exit({SCRIPT_EXIT})\n")
    core = crashkit.crash([str(exe)], work / "cores")
    yield exe, core, markers
    for m in markers.iterdir():
        m.unlink()
    markers.rmdir()


# -- watching the real gdb from outside -----------------------------------------

def _tree() -> dict[int, tuple[int, str]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            out[int(name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), comm)
    return out


def _descends(pid: int, ancestor: int, tree) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid not in tree or pid <= 1:
            return False
        pid = tree[pid][0]
    return False


class Watch(threading.Thread):
    """Snapshots, from /proc, every process this test's analysis starts:
    gdb from its first moment to its last, the sandbox's Python once it is
    no longer root."""

    def __init__(self, data_dir: Path):
        super().__init__(daemon=True)
        self.data_dir = data_dir
        self.gdb: list[dict] = []  # every snapshot of gdb, in order
        self.parser: dict | None = None
        self.done = threading.Event()

    def run(self):
        me = os.getpid()
        ours = Path("/proc/self/comm").read_text().strip()  # the sandbox's Python is a fork: "python", "pytest"
        while not self.done.is_set():
            tree = _tree()
            for pid, (_, comm) in tree.items():
                if pid == me or not _descends(pid, me, tree):
                    continue
                if comm in ("gdb", "gdb-multiarch"):
                    snap = self._snapshot(pid)
                    if snap:
                        self.gdb.append(snap)
                elif comm == ours and self.parser is None:
                    snap = self._snapshot(pid)
                    if snap and snap["status"]["Uid"][0] != "0":
                        self.parser = snap
            time.sleep(0.001)

    def _snapshot(self, pid: int) -> dict | None:
        base = Path(f"/proc/{pid}")
        try:
            status = {k: v.split() for k, _, v in (l.partition(":") for l in
                                                     (base / "status").read_text().splitlines())}
            snap = {"status": status,
                    "ns": {ns: os.readlink(base / "ns" / ns) for ns in ("mnt", "net", "ipc", "uts", "pid")},
                    "mounts": [l.split()[4:6] for l in (base / "mountinfo").read_text().splitlines()],
                    "net_dev": (base / "net/dev").read_text(),
                    "net_tcp": (base / "net/tcp").read_text() + (base / "net/tcp6").read_text(),
                    "tmp": sorted(os.listdir(base / "root/tmp"))}
            seen_data = base / "root" / str(self.data_dir).lstrip("/")
            snap["data_dir"] = sorted(os.listdir(seen_data)) if seen_data.is_dir() else None
            return snap
        except OSError:
            return None  # gone, or not yet gdb


@pytest.fixture
def listener():
    """A TCP server on the host's loopback."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def parsers_refuse_root(monkeypatch):
    """The core's notes and the modules' ELF headers may only be parsed
    without root's rights: run as root, the parsers fail the analysis."""
    def guard(real):
        def guarded(*args, **kwargs):
            status = Path("/proc/self/status").read_text()
            if os.geteuid() == 0 or "CapEff:\t0000000000000000" not in status:
                raise AssertionError(f"{real.__name__} ran with privileges")
            return real(*args, **kwargs)
        return guarded
    monkeypatch.setattr(analyze_module, "read_core", guard(analyze_module.read_core))
    monkeypatch.setattr(elfinfo, "elf_facts", guard(elfinfo.elf_facts))


def test_gdb_and_the_elf_parsers_run_confined(hostile, sandbox_uid, config, store, listener, parsers_refuse_root):
    from coretriage.ingest import ingest

    exe, core, _ = hostile
    (config.data_dir / "secret").write_text("nobody may read this")
    watch = Watch(config.data_dir)
    watch.start()
    try:
        done = ingest(config, store, core, exe)
    finally:
        watch.done.set()
        watch.join()
    a = done.analysis
    names = [f.function for f in a.crashing_thread.frames]
    assert "parse" in names and "main" in names  # parsed, by the guarded parsers, unprivileged
    assert {m.found_at for m in a.modules if m.path == str(exe)} == {str(exe)}  # the caller's paths

    assert watch.gdb, "gdb was never seen running"
    gdb = watch.gdb[-1]  # while it works on the core
    mine = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("mnt", "net", "ipc", "uts", "pid")}
    for snap in (*watch.gdb, watch.parser):  # gdb confined from its first moment
        st = snap["status"]
        assert st["Uid"] == [str(sandbox_uid)] * 4 and st["Gid"][0] != "0" and st.get("Groups", []) == []
        assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == st["CapAmb"] == ["0000000000000000"]
        assert st["NoNewPrivs"] == ["1"]
        assert all(snap["ns"][ns] != mine[ns] for ns in mine), snap["ns"]
    # no network: a loopback that is down, and not the host's (its listener is not there)
    interfaces = [l.split(":")[0].strip() for l in gdb["net_dev"].splitlines()[2:]]
    assert interfaces == ["lo"]
    assert f":{listener:04X} " not in gdb["net_tcp"]
    assert f":{listener:04X} " in Path("/proc/self/net/tcp").read_text()  # (the host's does have it)
    # writable: the scratch dir alone; the data dir, database included, out of sight
    writable = [m for m, opts in gdb["mounts"] if opts.split(",")[0] == "rw"]
    assert writable == ["/tmp"]
    assert gdb["tmp"] == ["in", "work"]
    assert not gdb["data_dir"]  # hidden: gone (it was under /tmp) or an empty directory


def probe(_state, job: dict) -> dict:
    """Run inside the analysis's sandbox: what can it reach?"""
    out: dict = {"uid": os.getuid()}
    for path in job["write"]:
        try:
            with open(path, "w") as f:
                f.write("x")
            out[path] = "written"
        except OSError as exc:
            out[path] = errno.errorcode[exc.errno]
    for path in job["read"]:
        try:
            out[path] = "read: " + Path(path).read_text()[:20]
        except OSError as exc:
            out[path] = errno.errorcode[exc.errno]
    try:
        socket.create_connection(("127.0.0.1", job["port"]), timeout=2).close()
        out["connect"] = "connected"
    except OSError as exc:
        out["connect"] = errno.errorcode.get(exc.errno, str(exc))
    return out


def test_from_inside_the_sandbox_nothing_outside_is_reachable(sandbox_uid, config, store, listener):
    from coretriage.ingest import sandbox_policy

    db = Path(config.database_url.removeprefix("sqlite:///"))
    assert db.is_file()
    outside = [str(db.parent / "planted"), "/var/tmp/coretriage-planted", "/etc/coretriage-planted",
               "/dev/shm/coretriage-planted", "/root/coretriage-planted"]
    answer = Sandbox(sandbox_policy(config), f"{__name__}:probe").start().call(
        {"write": ["/tmp/work/scratch-ok", *outside], "read": [str(db), "/etc/shadow"], "port": listener})
    assert answer["uid"] == sandbox_uid
    assert answer["/tmp/work/scratch-ok"] == "written"
    assert not any(answer[p] == "written" for p in outside), answer
    assert not any(Path(p).exists() for p in outside)
    assert answer[str(db)] in ("ENOENT", "EACCES") and answer["/etc/shadow"] == "EACCES"
    assert answer["connect"] in ("ENETUNREACH", "ECONNREFUSED"), answer  # never "connected"


def test_gdb_scripts_in_a_hostile_binary_never_run(hostile, config, store):
    from coretriage.ingest import ingest

    exe, core, markers = hostile
    # the scripts are real: a gdb that trusts the binary's directory runs both
    for extra in (["-iex", "set auto-load safe-path /"],):
        done = subprocess.run(["gdb", "-batch", "-nx", *extra, "-ex", "bt", str(exe), str(core)],
                              capture_output=True, timeout=60)
        assert done.returncode == SCRIPT_EXIT
    assert (markers / "inline").exists() or (markers / "objfile").exists()
    for m in markers.iterdir():
        m.unlink()

    a = ingest(config, store, core, exe).analysis
    assert not list(markers.iterdir())
    assert not any(p.code == GDB_FAILED for p in a.problems), a.problems
    names = [f.function for f in a.crashing_thread.frames]
    assert "parse" in names and "main" in names


def test_a_corrupt_core_is_one_line_of_error(hostile, tmp_path):
    _, core, _ = hostile
    head = core.read_bytes()[:4096]
    cases = {"garbage": b"\x7fELF" + os.urandom(8192),
             "headers only": head,
             "notes scrambled": head[:64] + bytes(b ^ 0x5A for b in head[64:]) + core.read_bytes()[4096:]}
    for name, data in cases.items():
        bad = tmp_path / name.replace(" ", "-")
        bad.write_bytes(data)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(tmp_path / "data"),
                               "ingest", str(bad)], capture_output=True, text=True, timeout=120)
        assert time.monotonic() - started < 60, name
        assert "Traceback" not in done.stderr, (name, done.stderr)
        if done.returncode != 0:
            assert done.stderr.count("\n") == 1 and done.stderr.startswith("coretriage: error: "), (name, done.stderr)


def asks(_state, job: dict) -> dict:
    """A sandbox child taken over by a hostile file: it asks its parent for
    host files, as the analysis does for binaries it may not read."""
    from analyzer.sandbox import request

    out = {}
    for path, build_id in job["ask"]:
        reply = request({"host_file": path, "build_id": build_id})
        got = reply.get("path") if isinstance(reply, dict) else None
        out[path] = Path(got).read_bytes()[:4].hex() if got else None
    return out


def test_a_taken_over_sandbox_gets_no_secret_host_file(hostile, config, tmp_path):
    """Only a regular ELF file with the very build-id asked for is copied
    in: not /etc/shadow, not a binary under another build-id, not a FIFO."""
    from analyzer.elfid import build_id, fd_reader
    from coretriage.ingest import sandbox_policy

    exe, _, _ = hostile
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    secret_elf = private / "tool"
    secret_elf.write_bytes(exe.read_bytes())
    secret_elf.chmod(0o600)
    fd = os.open(secret_elf, os.O_RDONLY)
    real_id = build_id(fd_reader(fd))
    os.close(fd)
    fifo = private / "fifo"
    os.mkfifo(fifo)
    asked = [("/etc/shadow", real_id), (str(secret_elf), "0" * 40), (str(fifo), real_id),
             ("relative/path", real_id), (str(secret_elf), "../../etc"), (str(secret_elf), real_id)]
    started = time.monotonic()
    got = Sandbox(sandbox_policy(config), f"{__name__}:asks",
                  on_request="analyzer.analyze:_grant_host_file").start().call({"ask": asked})
    assert time.monotonic() - started < 30  # the FIFO did not hang the parent
    assert got == {"/etc/shadow": None, str(fifo): None, "relative/path": None,
                   str(secret_elf): "7f454c46"}  # (the last request for it, the right build-id, was granted)


def lies(_state, job: dict):
    return job["answer"]


@pytest.mark.parametrize("answer", [None, [], {"core": 1, "threads": "x"}, {"threads": [{"bogus": 1}]},
                                    {"core": "c", "pid": "1; DROP TABLE"},
                                    {"core": "c", "threads": [{"number": 1, "lwp": None, "crashed": True,
                                                               "frames": [{"index": 0, "pc": "0x1"}]}]},
                                    {"core": "c", "context": [{"program": "x", "fields": [["a", 1]]}]},
                                    {"core": "c", "signal": {"number": "11", "name": "SIGSEGV"}}])
def test_a_taken_over_sandbox_answering_nonsense_is_one_line(answer, config, hostile, monkeypatch):
    """The parent reads the sandbox's answer as data: nonsense is a one-line
    error, never a traceback."""
    import analyzer.sandbox as sandbox
    from analyzer.analyze import analyze_core
    from analyzer.sandbox import SandboxError

    _, core, _ = hostile
    real = sandbox.analysis_sandbox

    def lying(budget=None, policy=None):
        box = real(budget, policy)
        box.handler = f"{__name__}:lies"
        return box

    monkeypatch.setattr("analyzer.confined.analysis_sandbox", lying)
    original_call = sandbox.Sandbox.call
    monkeypatch.setattr(sandbox.Sandbox, "call", lambda self, job: original_call(self, {**job, "answer": answer}))
    with pytest.raises(SandboxError) as e:
        analyze_core(core)
    assert "\n" not in str(e.value)
