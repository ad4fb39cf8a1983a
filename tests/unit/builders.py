"""What several unit test files build: a full bundle meta, and fake /proc and
root trees for host-setup (on sys.path through ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

from collector.bundle import BundleMeta
from analyzer.secrets import MASK

CID = "3f1c8e8b2a4d4c6e9b0a7f5e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def bundle_meta(**kw) -> BundleMeta:
    """A bundle meta with every field set; keywords replace fields."""
    values = dict(id="1795619035-11265-0a1b2c3d", pid=11265, signal=11, crash_time=1795619035,
                  host_time=1795619035.25, tid=11265, host_tid=11265, uid=0, gid=0, dump_mode=1,
                  hostname="vm", exe="/usr/sbin/haproxy", comm="haproxy",
                  cmdline=("haproxy", "-f", "/etc/haproxy/haproxy.cfg"), cwd="/",
                  environ={"PATH": "/usr/bin", "DB_PASSWORD": MASK}, cgroup=f"0::/docker/{CID}",
                  container_id=CID, container_runtime="docker",
                  namespaces={"pid": "pid:[4026531836]", "mnt": "mnt:[4026531841]"},
                  maps=("/usr/sbin/haproxy", "/usr/lib/x86_64-linux-gnu/libc.so.6"), core_file="core.zst",
                  core_size=123456, core_compressed_size=2345, problems=("one", "two"))
    values.update(kw)
    return BundleMeta(**values)


# --- fake /proc and root trees for host-setup ------------------------------------

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max open files            1048576              1048576              files     
Max nice priority         0                    0                    
"""
LIMITS_UNLIMITED_CORE = LIMITS.replace("Max core file size        0   ", "Max core file size        unlimited")
HANDLER = ["/usr/bin/python3", "-m", "collector.handler", "--data-dir", "/var/lib/coretriage",
           "%P", "%i", "%s", "%t", "%u", "%g", "%d", "%E", "%e"]
APPORT_PATTERN = "|/usr/share/apport/apport %p %s %c %d %P %E"
DAEMON = {"log-driver": "json-file", "log-opts": {"max-size": "10m"},
          "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}}


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


def handler_argv(data: Path) -> list[str]:
    return ["/usr/bin/python3", "-m", "collector.handler", "--data-dir", str(data), *HANDLER[5:]]


def stack_core(core: Path, out: Path) -> Path:
    """The stack-only core of the ELF core file ``core`` written to ``out``,
    as the handler writes it while streaming: fed in 1 MiB pieces."""
    import io
    import mmap

    from collector.corehead import notes_end
    from collector.stackcore import StackWriter, core_reader, plan

    with open(core, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        head = data[:8 << 20]
        stack_plan = plan(head[:notes_end(head)], read=core_reader(data))
        buf = io.BytesIO()
        writer = StackWriter(stack_plan, buf)
        view = memoryview(data)
        for at in range(0, len(data), 1 << 20):
            writer.feed(at, view[at:at + (1 << 20)])
        del view
    assert writer.complete and len(buf.getvalue()) == stack_plan.size
    out.write_bytes(buf.getvalue())
    return out
