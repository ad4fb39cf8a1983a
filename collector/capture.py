"""One crash -> ``SPOOL/<id>/``, as named steps; the pipe handler
(``collector.handler``) and the socket server (``collector.socket_server``)
both run ``capture``:

1. open the process (``collector.process``): the /proc handle and the pidfd
   check, before anything else can happen to the pid;
2. decide the policy (``collector.policy``): keep the full core, the stack
   core only, or the metadata only; the rate limit counts by build
   (``collector.exebuild``);
3. keep the process's files (``collector.sysroot``) while the kernel holds it;
4. stream the core (``collector.corestream``) until its end, ``max_core_size``
   or the wall-clock budget (``max_core_seconds`` from the handler's start),
   then close the source, which releases the process; the stack-only core
   (``stack.zst``, ``collector.stackcore``) is written in the same pass, and
   a crash that keeps only it is read until its stacks are; a crash that
   keeps none is not read at all;
5. write the bundle: ``meta.json`` last, atomically (``collector.spool``).
   The bundle directory is locked (``flock``) from its creation until then,
   so no other handler's eviction takes a core being written.

Whatever happens, the source is closed and the process released; nothing
here raises for a crash it cannot keep: the outcome is one (syslog
priority, line).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass

from collector.bundle import Bundle, BundleMeta, display, remove_files
from collector.cgroup import ContainerRef, container_from_cgroup
from collector.corestream import Streamed, bigger_pipe, release, stream_core
from collector.exebuild import exe_build
from collector.logline import safe
from collector.policy import CapturePolicy, PolicyError, decide, load_policy, setuid_rule
from collector.process import ProcInfo, Process
from collector.ratelimit import key_for
from collector.spool import SpoolError, new_bundle, open_spool, write_meta
from collector.osrelease import read_in_root
from collector.sender import sender_comm
from collector.sysroot import keep_files

DEFAULT_DATA_DIR = "/var/lib/coretriage"
WATCHDOG_GRACE = 120  # seconds past max_core_seconds: the files (20 s), fsyncs, a slow disk


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


def inferred_dump_mode(status: dict[str, str], proc_owner: int | None) -> int | None:
    """The socket mode's stand-in for ``%d``: 2 (set-uid or non-dumpable)
    when the real, effective and saved ids differ, or when ``/proc/PID``
    belongs to root while the process's effective uid is not root (the
    kernel does that for a process that is not dumpable); else 1. None when
    /proc could not be trusted."""
    uids, gids = status.get("Uid", "").split(), status.get("Gid", "").split()
    if len(uids) < 3 or len(gids) < 3:
        return None
    if len(set(uids[:3])) > 1 or len(set(gids[:3])) > 1:
        return 2
    return 2 if proc_owner == 0 and uids[1] != "0" else 1


def _dump_mode(args: Args, proc: Process, info: ProcInfo) -> int | None:
    if args.dump_mode is not None or proc.fd is None:
        return args.dump_mode
    try:
        owner = os.fstat(proc.fd).st_uid
    except OSError:
        owner = None
    return inferred_dump_mode(info.status, owner)


def _mem(proc: Process, policy: CapturePolicy) -> int | None:
    """The crashed process's memory (``/proc/PID/mem``, through the checked
    /proc handle), which the stack core's plan reads while the kernel dumps it."""
    if not policy.stack_cores or proc.fd is None:
        return None
    try:
        return os.open("mem", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=proc.fd)
    except OSError:
        return None


def _stream(stdin: int, bundle_fd: int, policy: CapturePolicy, deadline: float, problems: list[str],
            kind: str, mem_fd: int | None, info: ProcInfo) -> Streamed:
    try:
        streamed = stream_core(stdin, bundle_fd, policy, deadline, problems, full=kind == "full",
                               stack=policy.stack_cores, mem_fd=mem_fd,
                               name_sender=lambda pid, uid: _sender_comm(pid, info))
    except Exception as exc:  # a bug: still release the process, still record the crash
        release(stdin)
        problems.append(f"handler error while reading the core: {type(exc).__name__}: {exc}")
        streamed = Streamed(dropped="handler error", stopped="handler error")
        for name in (Bundle.CORE, Bundle.STACK):
            try:
                os.unlink(name, dir_fd=bundle_fd)
            except OSError:
                pass
    if streamed.kind == "none":  # no core after all: its files are of no use in this bundle
        remove_files(bundle_fd)
    return streamed


def _confine(problems: list[str]) -> None:
    from collector.privileges import give_up_privileges

    why = give_up_privileges()
    if why:
        problems.append(f"capabilities not dropped before reading the core: {why}")


def capture(args: Args, host_time: float, started: float, stdin: int = 0,
            own_process: bool = False) -> tuple[str, str]:
    """Everything but the last resort; returns (syslog priority, line).
    ``own_process`` (the pipe handler, a process of its own): SIGALRM ends the
    process, and so closes stdin, should a step block past the budget and
    ``WATCHDOG_GRACE`` (a file on a FUSE server that never answers); and
    once the process has been read, every capability is given up
    (``collector.privileges``) before the core is."""
    problems: list[str] = []
    with Process(args.pid, args.pidfd, problems) as proc:
        policy = _policy(args.data_dir, problems)
        deadline = started + policy.max_core_seconds
        if own_process:
            signal.alarm(int(policy.max_core_seconds + WATCHDOG_GRACE))
        info = proc.read(policy.secret_names)
        who = _crashed(args, info, problems)
        dump_mode = _dump_mode(args, proc, info)
        spool = args.spool or os.path.join(args.data_dir, "spool")
        spool_fd = None
        try:
            spool_fd = open_spool(spool)
            bid, bundle_fd = new_bundle(spool_fd, args.crash_time, args.pid)
        except (SpoolError, OSError) as exc:
            if spool_fd is not None:
                os.close(spool_fd)
            release(stdin)
            return "LOG_ERR", f"crash of {who.what} lost: {safe(exc, 400)}; core not read"

        def rate_key() -> str:
            build = exe_build(proc.fd if info.exe else None, who.exe or who.comm, problems)
            return key_for(build, who.container.id if who.container else None, args.uid)

        kept = decide(policy, spool_fd, bid, who.exe, dump_mode, rate_key, problems)
        dropped = kept.why
        if kept.kind != "none" and info.maps_raw and policy.capture_files and proc.fd is not None:
            keep_files(proc.fd, info.maps_raw, bundle_fd, args.data_dir, policy.max_file_size, problems)
        mem_fd = _mem(proc, policy) if kept.kind != "none" else None
        os_release = read_in_root(proc.fd) if proc.fd is not None else None
    if kept.kind != "none":
        bigger_pipe(stdin)  # only now, see bigger_pipe
        if own_process:
            _confine(problems)  # /proc/PID/mem is open already: reading it needs no capability
        try:
            streamed = _stream(stdin, bundle_fd, policy, deadline, problems, kept.kind, mem_fd, info)
        finally:
            if mem_fd is not None:
                os.close(mem_fd)
        dropped = dropped or streamed.dropped
        if streamed.kind != "full" and streamed.stack_missing and dropped:
            dropped = f"{dropped}; no stack core: {streamed.stack_missing}"
    else:  # never read: closing the pipe lets the process go at once
        release(stdin)
        streamed = Streamed(stopped="core dropped before reading")
    transient = setuid_rule(policy, dump_mode) if policy.setuid_cores == "analyze-then-delete" else None
    meta = _meta(args, bid, host_time, info, who, dump_mode, streamed, dropped, transient, problems, started)
    meta = dataclasses.replace(meta, os_release=os_release, signal_sender=_sender(streamed))
    try:
        write_meta(bundle_fd, meta)
        os.fsync(spool_fd)
    finally:
        os.close(bundle_fd)  # unlocks the bundle: from now on eviction may take its core
        os.close(spool_fd)
    where = os.path.join(spool, bid)
    tail = f" ({len(problems)} problems)" if problems else ""
    if streamed.kind == "stack":
        return "LOG_WARNING", (f"crash of {who.what} recorded in {safe(where)} with its stack core "
                               f"({streamed.stack_size} bytes, {streamed.stack_compressed} compressed), "
                               f"full core dropped: {safe(dropped)} ({streamed.size} bytes read){tail}")
    if dropped:
        return "LOG_WARNING", (f"crash of {who.what} recorded in {safe(where)}, core dropped: {safe(dropped)} "
                               f"({streamed.size} bytes read){tail}")
    cut = f", partial: {safe(streamed.stopped)}" if streamed.stopped else ""
    return "LOG_INFO", (f"core of {who.what} kept in {safe(where)}: {streamed.size} bytes{cut}, "
                        f"{streamed.compressed} compressed, {meta.handler_seconds:.2f} s{tail}")


def _sender_comm(pid: int, info: ProcInfo) -> str | None:
    """The name of the process that sent the fatal signal, looked up while
    the kernel holds the crashed process (``collector.sender``)."""
    try:
        crashed = tuple(int(x) for x in info.status.get("NSpid", "").split())
        return sender_comm(pid, crashed, info.cgroup)
    except Exception:  # noqa: BLE001 - a name is a nicety: never lose the crash over it
        return None


def _sender(streamed: Streamed) -> dict | None:
    """The process that sent the fatal signal (the core's siginfo)."""
    if streamed.sender is None:
        return None
    pid, uid = streamed.sender
    return {"pid": pid, "uid": uid, "comm": streamed.sender_comm}


def _meta(args: Args, bid: str, host_time: float, info: ProcInfo, who: Crashed, dump_mode: int | None,
          streamed: Streamed, dropped: str | None, transient: str | None, problems: list[str], started: float) -> BundleMeta:
    container = who.container
    return BundleMeta(
        id=bid, pid=args.pid, signal=args.signal, crash_time=args.crash_time, host_time=host_time,
        tid=args.tid, host_tid=args.host_tid, ns_pid=who.ns_pid, uid=args.uid, gid=args.gid,
        dump_mode=dump_mode, hostname=display(os.uname().nodename), exe=who.exe, comm=who.comm,
        cmdline=info.cmdline, cwd=info.cwd, environ=info.environ, cgroup=info.cgroup,
        container_id=container.id if container else None,
        container_runtime=container.runtime if container else None,
        pod_uid=container.pod_uid if container else None,
        namespaces=info.namespaces, maps=info.maps,
        core_file=None if streamed.kind != "full" else Bundle.CORE, core_size=streamed.size,
        core_compressed_size=streamed.compressed if streamed.kind == "full" else None,
        dropped=dropped, stopped_reading=streamed.stopped, core_kind=streamed.kind,
        stack_core_file=Bundle.STACK if streamed.stack_compressed is not None else None,
        stack_core_size=streamed.stack_size, stack_core_compressed_size=streamed.stack_compressed,
        delete_core_after_analysis=None if streamed.kind == "none" else transient, problems=tuple(problems),
        handler_seconds=round(time.monotonic() - started, 3))
