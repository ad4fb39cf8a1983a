"""The kernel's core_pattern pipe handler: one crash -> ``SPOOL/<id>/``.

Started by the kernel (build the string with ``collector.corepattern.core_pattern``)::

    |/path/to/python -I -m collector.handler [-d DATA_DIR] [-s SPOOL] %P %i %I %s %t %u %g %d %F %E %e

``-d`` is the data directory (default ``/var/lib/coretriage``): limits come
from ``DATA_DIR/collector.toml`` (``collector.limits``) and the spool is
``DATA_DIR/spool`` unless ``-s`` names another. Options come first; after
them every argument is positional, so a comm of ``-s`` is just a comm.

The specifiers, in this order:

====  =====================================================================
%P    pid of the crashed process in the initial pid namespace. ``/proc/%P``
      is opened as a directory first thing, and every file is read through
      that handle, before a byte of the core is read: the kernel keeps the
      process (``CoreDumping: 1``) while the pipe is full. Set
      ``kernel.core_pipe_limit`` > 0 (systemd-coredump uses 16) and the kernel
      holds it until the handler closes stdin, which it does as soon as the
      core is read; with the default 0, a core smaller than the pipe
      (64 KiB) lets the process go before /proc could be read.
%i    tid of the crashing thread in its own pid namespace (the numbering
      of the core's notes)
%I    the same thread in the initial pid namespace
%s    signal number
%t    time of the dump, seconds since the epoch (first part of the bundle id)
%u    real uid of the process, cross-checked with ``/proc/%P/status``
%g    real gid, likewise
%d    dump mode: 1 normal; 2 a set-uid or non-dumpable process dumped
      because ``fs.suid_dumpable=2`` (root-only; every bundle is 0700 anyway)
%F    a pidfd for the crashed process, put by the kernel at that fd number
      (Linux 6.16+; older kernels expand it to an empty argument and the
      handler falls back to ``pidfd_open(%P)``). It proves that ``/proc/%P``
      is the crashed process and not a newcomer that reused the pid.
%E    executable path with ``/`` written as ``!``; only a fallback when
      ``/proc/%P/exe`` cannot be read (ambiguous when a name holds ``!``)
%e    comm, the thread name (15 bytes, any bytes: spaces, newlines, ``..``).
      Last, so that with a kernel older than 5.3 (which split the pattern
      after expanding it) the rest is joined back.
====  =====================================================================

Rules it keeps: small imports (stdlib and zstandard), no network, no
database; stdin is ALWAYS read to the end, whatever happens, so the crashed
process is never left hanging; no traceback ever reaches the kernel; one
line to syslog (``/dev/log``) on every outcome, sent after stdin is drained;
names from the crashed process are never used in a path; secrets are
masked (``collector.secrets``) before anything is written; ``meta.json`` is
written last and atomically.

Cores are dropped, and the crash still recorded in ``meta.json`` with the
reason in ``dropped``, when: free space on the spool filesystem is below
``min_free_space`` (checked at the start and every 64 MiB), the executable
has had ``rate_limit`` cores kept within ``rate_window`` seconds, or the
core grows past ``max_core_size`` (stdin is still drained and ``core_size``
says how big it was).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from dataclasses import dataclass, field

from collector import ratelimit
from collector.bundle import BundleMeta, bundle_id, display
from collector.cgroup import container_from_cgroup
from collector.limits import Limits, LimitsError, load_limits
from collector.secrets import mask_argv, mask_environ
from collector.spool import CORE, SpoolError, create_bundle, create_file, open_spool, write_meta
from collector.retention import make_room
from collector.sysroot import capture_files

DEFAULT_DATA_DIR = "/var/lib/coretriage"
LOG_IDENT = "coretriage-collector"
CHUNK = 1 << 20  # read size from the kernel's pipe
PIPE_SIZE = 1 << 20  # asked of the kernel for stdin (fewer wake-ups)
PROC_MAX = 1 << 20  # most bytes read from one /proc file
MAPS_MAX = 8 << 20
FREE_CHECK_EVERY = 64 << 20
NAMESPACES = ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup")


class Usage(Exception):
    pass


@dataclass
class Args:
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


@dataclass
class ProcInfo:
    """What /proc/PID said, secrets already masked."""

    exe: str | None = None
    cwd: str | None = None
    cmdline: list[str] = field(default_factory=list)
    environ: dict[str, str] = field(default_factory=dict)
    maps: list[str] = field(default_factory=list)
    maps_raw: bytes = b""
    cgroup: str | None = None
    namespaces: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)


# ---- arguments ----

def _int(value: str, name: str, required: bool = False) -> int | None:
    if value == "" and not required:
        return None
    try:
        return int(value)
    except ValueError:
        raise Usage(f"{name}: not a number: {value[:40]!r}") from None


def parse_args(argv: list[str]) -> Args:
    options: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        name, eq, value = arg.partition("=")
        key = {"-d": "data_dir", "--data-dir": "data_dir", "-s": "spool", "--spool": "spool"}.get(name)
        if key is None:
            raise Usage(f"unknown option {name[:40]!r}")
        if not eq:
            if i + 1 >= len(argv):
                raise Usage(f"{name} needs a value")
            value = argv[i + 1]
            i += 1
        options[key] = value
        i += 1
    pos = argv[i:]
    if len(pos) < 10:
        raise Usage(f"expected %P %i %I %s %t %u %g %d %F %E %e, got {len(pos)} arguments")
    comm = " ".join(pos[10:])  # kernels before 5.3 split a comm with spaces
    args = Args(pid=_int(pos[0], "pid", True), tid=_int(pos[1], "tid"), host_tid=_int(pos[2], "host tid"),
                signal=_int(pos[3], "signal", True), crash_time=_int(pos[4], "time", True),
                uid=_int(pos[5], "uid"), gid=_int(pos[6], "gid"), dump_mode=_int(pos[7], "dump mode"),
                pidfd=_int(pos[8], "pidfd"), exe_bang=pos[9], comm=comm, **options)
    if args.pid <= 0:
        raise Usage(f"bad pid {args.pid}")
    for name in ("data_dir", "spool"):
        value = getattr(args, name)
        if value is not None and not value.startswith("/"):
            raise Usage(f"--{name.replace('_', '-')} must be an absolute path")
    return args


# ---- /proc, through one directory handle ----

def _read_at(dir_fd: int, name: str, limit: int = PROC_MAX) -> tuple[bytes, bool]:
    """(content, truncated) of a /proc file read relative to ``dir_fd``."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        parts, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(CHUNK, limit - size))
            if not chunk:
                return b"".join(parts), False
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts), bool(os.read(fd, 1))
    finally:
        os.close(fd)


def _starttime(proc_fd: int) -> int:
    stat, _ = _read_at(proc_fd, "stat")
    return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22


def _status(raw: bytes) -> dict[str, str]:
    out = {}
    for line in raw.decode("utf-8", "backslashreplace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def _mapped_files(raw: bytes) -> list[str]:
    seen: dict[str, None] = {}
    for line in raw.split(b"\n"):
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(b"/"):
            seen.setdefault(display(parts[5]), None)
    return list(seen)


def _environ(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        if entry:
            name, _, value = entry.partition(b"=")
            env.setdefault(display(name), display(value))
    return env


def read_proc(proc_fd: int, limits: Limits, problems: list[str]) -> ProcInfo:
    info = ProcInfo()

    def attempt(what: str, fn):
        try:
            return fn()
        except (OSError, ValueError, IndexError) as exc:
            problems.append(f"/proc/PID/{what}: {getattr(exc, 'strerror', None) or exc}")
            return None

    def text(name: str, limit: int = PROC_MAX) -> bytes:
        raw, cut = _read_at(proc_fd, name, limit)
        if cut:
            problems.append(f"/proc/PID/{name}: longer than {limit} bytes, cut")
        return raw

    exe = attempt("exe", lambda: os.readlink(b"exe", dir_fd=proc_fd))
    info.exe = display(exe) if exe is not None else None
    cwd = attempt("cwd", lambda: os.readlink(b"cwd", dir_fd=proc_fd))
    info.cwd = display(cwd) if cwd is not None else None
    raw = attempt("cmdline", lambda: text("cmdline"))
    if raw:
        info.cmdline = mask_argv([display(a) for a in raw.rstrip(b"\0").split(b"\0")], limits.secret_names)
    raw = attempt("environ", lambda: text("environ"))
    if raw:
        info.environ = mask_environ(_environ(raw), limits.secret_names)
    raw = attempt("maps", lambda: text("maps", MAPS_MAX))
    if raw:
        info.maps = _mapped_files(raw)
        info.maps_raw = raw
    raw = attempt("cgroup", lambda: text("cgroup"))
    if raw is not None:
        info.cgroup = display(raw).strip()
    raw = attempt("status", lambda: text("status"))
    if raw:
        info.status = _status(raw)
    for ns in NAMESPACES:
        link = attempt(f"ns/{ns}", lambda: os.readlink(f"ns/{ns}".encode(), dir_fd=proc_fd))
        if link is not None:
            info.namespaces[ns] = display(link)
    return info


# ---- the crashed process, and that it is still the same one ----

def _kernel_pidfd(fd: int, pid: int, problems: list[str]) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            fields = _status(f.read())
    except OSError:
        problems.append(f"%F: fd {fd} is not open")
        return None
    if fields.get("Pid") != str(pid):
        problems.append(f"%F: fd {fd} is not a pidfd for pid {pid} (Pid: {fields.get('Pid')!r})")
        return None
    return fd


def _pidfd(args: Args, problems: list[str]) -> tuple[int | None, bool]:
    """(pidfd, from the kernel?)."""
    if args.pidfd is not None:
        fd = _kernel_pidfd(args.pidfd, args.pid, problems)
        if fd is not None:
            return fd, True
    try:
        return os.pidfd_open(args.pid), False
    except (OSError, AttributeError) as exc:
        problems.append(f"pidfd_open({args.pid}): {getattr(exc, 'strerror', None) or exc}")
        return None, False


def _exited(pidfd: int) -> bool:
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def confirm_identity(proc_fd: int, pidfd: int | None, start: int | None, info: ProcInfo) -> str | None:
    """None when /proc/PID is the crashed process, else why not. Without a
    pidfd (kernels before 5.3) only the start time and CoreDumping vouch."""
    if pidfd is not None and _exited(pidfd):
        return "the process exited before its core was read"
    try:
        if start is None or _starttime(proc_fd) != start:
            return "the process's start time changed (pid reused)"
    except (OSError, ValueError, IndexError):
        return "the process is gone"
    if info.status.get("CoreDumping", "1") != "1":
        return "the process at this pid is not dumping core"
    return None


# ---- the core ----

@dataclass
class Streamed:
    size: int = 0  # uncompressed bytes read from stdin
    compressed: int | None = None
    dropped: str | None = None


def _free_space(fd: int) -> int:
    st = os.fstatvfs(fd)
    return st.f_bavail * st.f_frsize


def stream_core(src_fd: int, bundle_fd: int | None, limits: Limits, problems: list[str]) -> Streamed:
    """Read ``src_fd`` to its end; compress it into ``core.zst`` when
    ``bundle_fd`` is given, until a limit says stop (then it is removed)."""
    out = Streamed()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    core_fd = file = writer = None
    if bundle_fd is not None:
        import zstandard

        core_fd = create_file(bundle_fd, CORE)
        file = open(core_fd, "wb", buffering=CHUNK, closefd=False)
        writer = zstandard.ZstdCompressor(level=limits.compression_level,
                                          threads=limits.compression_threads).stream_writer(
            file, write_size=CHUNK, closefd=False)
    next_check = FREE_CHECK_EVERY

    def stop(reason: str | None) -> None:
        nonlocal core_fd, file, writer
        out.dropped = reason
        for closer in (writer, file):
            try:
                closer.close()
            except Exception:
                pass
        os.close(core_fd)
        try:
            os.unlink(CORE, dir_fd=bundle_fd)
        except OSError as exc:
            problems.append(f"could not remove the partial core: {exc.strerror}")
        core_fd = file = writer = None

    while True:
        try:
            n = os.readv(src_fd, [view])
        except InterruptedError:
            continue
        except OSError as exc:
            problems.append(f"reading the core from the kernel: {exc.strerror}")
            break
        if n == 0:
            break
        out.size += n
        if writer is None:
            continue
        if out.size > limits.max_core_size:
            stop(f"core larger than max_core_size ({limits.max_core_size} bytes)")
            continue
        try:
            writer.write(view[:n])
            if out.size >= next_check:
                next_check += FREE_CHECK_EVERY
                free = _free_space(core_fd)
                if free < limits.min_free_space:
                    stop(f"low disk space: {free} bytes left on the spool filesystem "
                         f"(min_free_space {limits.min_free_space})")
        except OSError as exc:
            stop(f"writing the core failed: {exc.strerror}")
    release(src_fd)
    if writer is not None:
        try:
            writer.close()  # ends the frame; closefd=False leaves ``file`` open
            file.close()  # flushes; closefd=False leaves ``core_fd`` open
            os.fsync(core_fd)
            out.compressed = os.fstat(core_fd).st_size
            os.close(core_fd)
        except OSError as exc:
            stop(f"writing the core failed: {exc.strerror}")
    return out


def release(fd: int = 0) -> None:
    """Close the kernel's pipe (``/dev/null`` takes its place): with
    ``kernel.core_pipe_limit`` > 0 the kernel holds the crashed process until
    then, so this is done as soon as the core is read, before meta and syslog."""
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        os.dup2(null, fd)  # atomically closes the pipe
        os.close(null)
    except OSError:
        try:
            os.close(fd)
        except OSError:
            pass


def drain(fd: int = 0) -> int:
    """Read ``fd`` to its end, throwing it away, then release it. Returns the byte count."""
    total = 0
    buf = bytearray(CHUNK)
    while True:
        try:
            n = os.readv(fd, [buf])
        except InterruptedError:
            continue
        except OSError:
            break
        if n == 0:
            break
        total += n
    release(fd)
    return total


# ---- syslog ----

def _safe(text: object, limit: int = 200) -> str:
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "..."
    return s.encode("unicode_escape", "backslashreplace").decode("ascii")


def log(priority_name: str, message: str) -> None:
    """One line to syslog; never raises (no /dev/log: the line is lost)."""
    try:
        import syslog

        syslog.openlog(LOG_IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(getattr(syslog, priority_name), message)
        syslog.closelog()
    except Exception:
        pass


# ---- main ----

def _ensure_std_fds() -> None:
    """With fds 0-2 closed, a file we open could become 'stdout'."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _bigger_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


def capture(args: Args, host_time: float, started: float, stdin: int = 0) -> tuple[str, str]:
    """Everything but the last resort; returns (syslog priority, line)."""
    problems: list[str] = []
    # First: a handle on the process, before anything else can happen to the pid.
    try:
        proc_fd = os.open(f"/proc/{args.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        proc_fd = None
        problems.append(f"/proc/{args.pid}: {exc.strerror}")
    pidfd, from_kernel = _pidfd(args, problems)
    start = None
    if proc_fd is not None:
        try:
            start = _starttime(proc_fd)
        except (OSError, ValueError, IndexError) as exc:
            problems.append(f"/proc/PID/stat: {getattr(exc, 'strerror', None) or exc}")

    try:
        limits = load_limits(args.data_dir)
    except LimitsError as exc:
        limits = Limits()
        problems.append(f"{exc}; default limits used")

    info = ProcInfo()
    if proc_fd is not None:
        info = read_proc(proc_fd, limits, problems)
        why = confirm_identity(proc_fd, pidfd, start, info)
        if why is not None:
            problems.append(f"/proc/{args.pid} details discarded: {why}")
            info = ProcInfo()
    if pidfd is not None and not from_kernel:
        os.close(pidfd)

    exe = info.exe
    if exe is None and args.exe_bang:
        exe = display(args.exe_bang.replace("!", "/"))
        problems.append("exe from %E (with '!' read as '/')")
    comm = display(args.comm)
    status = info.status
    if args.uid is not None and "Uid" in status and status["Uid"].split()[:1] != [str(args.uid)]:
        problems.append(f"%u says uid {args.uid}, /proc status says {status['Uid']!r}")
    if args.gid is not None and "Gid" in status and status["Gid"].split()[:1] != [str(args.gid)]:
        problems.append(f"%g says gid {args.gid}, /proc status says {status['Gid']!r}")
    ns_pid = None
    if status.get("NSpid"):
        try:
            ns_pid = int(status["NSpid"].split()[-1])
        except ValueError:
            pass
    container = container_from_cgroup(info.cgroup) if info.cgroup else None
    what = f"pid {args.pid} ({_safe(exe or comm)}, signal {args.signal}" + \
        (f", container {container.id[:12]})" if container else ")")

    spool = args.spool or os.path.join(args.data_dir, "spool")
    try:
        spool_fd = open_spool(spool)
    except (SpoolError, OSError) as exc:
        n = drain(stdin)
        return "LOG_ERR", f"crash of {what} lost: {_safe(exc, 400)}; {n} bytes of core discarded"

    try:
        bundle_fd = None
        for _ in range(5):
            bid = bundle_id(args.crash_time, args.pid, os.urandom(4).hex())
            try:
                bundle_fd = create_bundle(spool_fd, bid)
                break
            except FileExistsError:
                continue
        if bundle_fd is None:
            raise SpoolError("could not create a bundle directory")
    except (SpoolError, OSError) as exc:
        os.close(spool_fd)
        n = drain(stdin)
        return "LOG_ERR", f"crash of {what} lost: {_safe(exc, 400)}; {n} bytes of core discarded"

    dropped = None
    try:
        evicted = make_room(spool_fd, limits.max_spool_use, limits.min_free_space, bid)
        if evicted:
            problems.append(f"made room: cores of {len(evicted)} older bundles evicted "
                            f"({evicted[0]}{' ...' if len(evicted) > 1 else ''})")
    except OSError as exc:
        problems.append(f"making room in the spool: {exc.strerror}")
    try:
        free = _free_space(spool_fd)
        if free < limits.min_free_space:
            dropped = (f"low disk space: {free} bytes left on the spool filesystem "
                       f"(min_free_space {limits.min_free_space})")
    except OSError as exc:
        problems.append(f"statvfs on the spool: {exc.strerror}")
    if dropped is None and not limits.keeps_core(exe):
        dropped = "no_core policy for this executable (collector.toml)"
    if dropped is None:
        allowed, problem = ratelimit.check(spool_fd, exe or comm, limits.rate_limit, limits.rate_window)
        if problem:
            problems.append(problem)
        if not allowed:
            dropped = "rate limit"

    if proc_fd is not None:
        if dropped is None and info.maps_raw and limits.capture_files:
            _capture_files(proc_fd, info.maps_raw, bundle_fd, args.data_dir, limits, problems)
        os.close(proc_fd)
    # Only now: with kernel.core_pipe_limit = 0 the kernel holds the process
    # just while the pipe is full, and a bigger pipe would let the process go
    # before /proc and its files were read.
    _bigger_pipe(stdin)

    try:
        streamed = stream_core(stdin, bundle_fd if dropped is None else None, limits, problems)
    except Exception as exc:  # a bug: still drain, still record the crash
        problems.append(f"handler error while reading the core: {type(exc).__name__}: {exc}")
        streamed = Streamed(size=drain(stdin), dropped="handler error")
        try:
            os.unlink(CORE, dir_fd=bundle_fd)
        except OSError:
            pass
    dropped = dropped or streamed.dropped
    if streamed.dropped:  # no core after all: its files are of no use in this bundle
        try:
            import shutil
            shutil.rmtree("root", dir_fd=bundle_fd)
        except OSError:
            pass

    meta = BundleMeta(
        id=bid, pid=args.pid, signal=args.signal, crash_time=args.crash_time, host_time=host_time,
        tid=args.tid, host_tid=args.host_tid, ns_pid=ns_pid, uid=args.uid, gid=args.gid,
        dump_mode=args.dump_mode, hostname=display(os.uname().nodename), exe=exe, comm=comm,
        cmdline=tuple(info.cmdline), cwd=info.cwd, environ=info.environ, cgroup=info.cgroup,
        container_id=container.id if container else None,
        container_runtime=container.runtime if container else None,
        pod_uid=container.pod_uid if container else None,
        namespaces=info.namespaces, maps=tuple(info.maps),
        core_file=None if dropped else CORE, core_size=streamed.size,
        core_compressed_size=None if dropped else streamed.compressed,
        dropped=dropped, problems=tuple(problems),
        handler_seconds=round(time.monotonic() - started, 3))
    try:
        write_meta(bundle_fd, meta)
        os.fsync(spool_fd)
    finally:
        os.close(bundle_fd)
        os.close(spool_fd)
    where = os.path.join(spool, bid)
    tail = f" ({len(problems)} problems)" if problems else ""
    if dropped:
        return "LOG_WARNING", (f"crash of {what} recorded in {_safe(where)}, core of {streamed.size} bytes "
                               f"dropped: {_safe(dropped)}{tail}")
    return "LOG_INFO", (f"core of {what} kept in {_safe(where)}: {streamed.size} bytes, "
                        f"{streamed.compressed} compressed, {meta.handler_seconds:.2f} s{tail}")


def _capture_files(proc_fd: int, maps: bytes, bundle_fd: int, data_dir: str, limits: Limits,
                   problems: list[str]) -> None:
    """The process's own executable and libraries, while the kernel still
    holds it (it is blocked writing the core into our pipe)."""
    try:
        files_fd = open_spool(os.path.join(data_dir, "files"))  # same checks as the spool
    except (SpoolError, OSError) as exc:
        problems.append(f"mapped files not kept: {exc}")
        return
    try:
        capture_files(proc_fd, maps, bundle_fd, files_fd, problems, limits.max_file_size)
    except OSError as exc:
        problems.append(f"mapped files: {exc.strerror}")
    finally:
        os.close(files_fd)


def main(argv: list[str] | None = None) -> int:
    host_time, started = time.time(), time.monotonic()
    try:
        os.umask(0o077)
        _ensure_std_fds()
        try:
            args = parse_args(sys.argv[1:] if argv is None else list(argv))
        except Usage as exc:
            n = drain(0)
            log("LOG_ERR", f"usage: {_safe(exc)}; {n} bytes of core discarded")
            return 2
        priority, line = capture(args, host_time, started)
        log(priority, line)
        return 0 if priority != "LOG_ERR" else 1
    except BaseException as exc:  # never a traceback to the kernel
        try:
            n = drain(0)
        except BaseException:
            n = -1
        log("LOG_ERR", f"handler failed: {type(exc).__name__}: {_safe(exc)}; {n} more bytes discarded")
        return 1


if __name__ == "__main__":
    sys.exit(main())
