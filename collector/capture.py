"""One crash -> ``SPOOL/<id>/``, as named steps; the pipe handler
(``collector.handler``) and the socket server (``collector.socket_server``)
both run ``capture``:

1. open the process (``collector.process``): the /proc handle and the pidfd
   check, before anything else can happen to the pid;
2. decide the policy (``collector.policy``): keep the core, drop it, or keep
   the metadata only;
3. keep the process's files (``collector.sysroot``) while the kernel holds it;
4. stream the core (``collector.corestream``), always draining the source;
5. write the bundle: ``meta.json`` last, atomically (``collector.spool``).

Nothing here raises for a crash it cannot keep: the outcome is one
(syslog priority, line).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from collector.bundle import Bundle, BundleMeta, display
from collector.cgroup import ContainerRef, container_from_cgroup
from collector.corestream import Streamed, bigger_pipe, drain, stream_core
from collector.logline import safe
from collector.policy import CapturePolicy, PolicyError, decide, load_policy
from collector.process import ProcInfo, Process
from collector.spool import SpoolError, new_bundle, open_spool, write_meta
from collector.sysroot import keep_files

DEFAULT_DATA_DIR = "/var/lib/coretriage"


@dataclass(frozen=True)
class Args:
    """What the kernel said about the crash (see collector.corepattern's table)."""

    pid: int
    signal: int
    crash_time: int
    tid: int | None = None
    host_tid: int | None = None
    uid: int | None = None
    gid: int | None = None
    dump_mode: int | None = None
    pidfd: int | None = None
    exe_bang: str = ""
    comm: str = ""
    data_dir: str = DEFAULT_DATA_DIR
    spool: str | None = None


@dataclass(frozen=True)
class Crashed:
    """Who crashed: /proc cross-checked with the kernel's arguments."""

    exe: str | None
    comm: str
    ns_pid: int | None
    container: ContainerRef | None
    what: str  # for the log line


def _policy(data_dir: str, problems: list[str]) -> CapturePolicy:
    try:
        return load_policy(data_dir)
    except PolicyError as exc:
        problems.append(f"{exc}; default limits used")
        return CapturePolicy()


def _crashed(args: Args, info: ProcInfo, problems: list[str]) -> Crashed:
    exe = info.exe
    if exe is None and args.exe_bang:
        exe = display(args.exe_bang.replace("!", "/"))
        problems.append("exe from %E (with '!' read as '/')")
    status = info.status
    for flag, value, key in (("%u", args.uid, "Uid"), ("%g", args.gid, "Gid")):
        if value is not None and key in status and status[key].split()[:1] != [str(value)]:
            problems.append(f"{flag} says {key.lower()} {value}, /proc status says {status[key]!r}")
    ns_pid = None
    if status.get("NSpid"):
        try:
            ns_pid = int(status["NSpid"].split()[-1])
        except ValueError:
            pass
    comm = display(args.comm)
    container = container_from_cgroup(info.cgroup) if info.cgroup else None
    what = f"pid {args.pid} ({safe(exe or comm)}, signal {args.signal}" + \
        (f", container {container.id[:12]})" if container else ")")
    return Crashed(exe=exe, comm=comm, ns_pid=ns_pid, container=container, what=what)


def _stream(stdin: int, bundle_fd: int, keep: bool, policy: CapturePolicy, problems: list[str]) -> Streamed:
    try:
        streamed = stream_core(stdin, bundle_fd if keep else None, policy, problems)
    except Exception as exc:  # a bug: still drain, still record the crash
        problems.append(f"handler error while reading the core: {type(exc).__name__}: {exc}")
        streamed = Streamed(size=drain(stdin), dropped="handler error")
        try:
            os.unlink(Bundle.CORE, dir_fd=bundle_fd)
        except OSError:
            pass
    if streamed.dropped:  # no core after all: its files are of no use in this bundle
        try:
            shutil.rmtree(Bundle.ROOT, dir_fd=bundle_fd)
        except OSError:
            pass
    return streamed


def capture(args: Args, host_time: float, started: float, stdin: int = 0) -> tuple[str, str]:
    """Everything but the last resort; returns (syslog priority, line)."""
    problems: list[str] = []
    with Process(args.pid, args.pidfd, problems) as proc:
        policy = _policy(args.data_dir, problems)
        info = proc.read(policy.secret_names)
        who = _crashed(args, info, problems)
        spool = args.spool or os.path.join(args.data_dir, "spool")
        spool_fd = None
        try:
            spool_fd = open_spool(spool)
            bid, bundle_fd = new_bundle(spool_fd, args.crash_time, args.pid)
        except (SpoolError, OSError) as exc:
            if spool_fd is not None:
                os.close(spool_fd)
            n = drain(stdin)
            return "LOG_ERR", f"crash of {who.what} lost: {safe(exc, 400)}; {n} bytes of core discarded"
        dropped = decide(policy, spool_fd, bid, who.exe, who.comm, problems)
        if dropped is None and info.maps_raw and policy.capture_files and proc.fd is not None:
            keep_files(proc.fd, info.maps_raw, bundle_fd, args.data_dir, policy.max_file_size, problems)
    bigger_pipe(stdin)  # only now, see bigger_pipe
    streamed = _stream(stdin, bundle_fd, dropped is None, policy, problems)
    dropped = dropped or streamed.dropped
    meta = _meta(args, bid, host_time, info, who, streamed, dropped, problems, started)
    try:
        write_meta(bundle_fd, meta)
        os.fsync(spool_fd)
    finally:
        os.close(bundle_fd)
        os.close(spool_fd)
    where = os.path.join(spool, bid)
    tail = f" ({len(problems)} problems)" if problems else ""
    if dropped:
        return "LOG_WARNING", (f"crash of {who.what} recorded in {safe(where)}, core of {streamed.size} bytes "
                               f"dropped: {safe(dropped)}{tail}")
    return "LOG_INFO", (f"core of {who.what} kept in {safe(where)}: {streamed.size} bytes, "
                        f"{streamed.compressed} compressed, {meta.handler_seconds:.2f} s{tail}")


def _meta(args: Args, bid: str, host_time: float, info: ProcInfo, who: Crashed, streamed: Streamed,
          dropped: str | None, problems: list[str], started: float) -> BundleMeta:
    container = who.container
    return BundleMeta(
        id=bid, pid=args.pid, signal=args.signal, crash_time=args.crash_time, host_time=host_time,
        tid=args.tid, host_tid=args.host_tid, ns_pid=who.ns_pid, uid=args.uid, gid=args.gid,
        dump_mode=args.dump_mode, hostname=display(os.uname().nodename), exe=who.exe, comm=who.comm,
        cmdline=info.cmdline, cwd=info.cwd, environ=info.environ, cgroup=info.cgroup,
        container_id=container.id if container else None,
        container_runtime=container.runtime if container else None,
        pod_uid=container.pod_uid if container else None,
        namespaces=info.namespaces, maps=info.maps,
        core_file=None if dropped else Bundle.CORE, core_size=streamed.size,
        core_compressed_size=None if dropped else streamed.compressed,
        dropped=dropped, problems=tuple(problems),
        handler_seconds=round(time.monotonic() - started, 3))
