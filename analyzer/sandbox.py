"""Run the analysis of a hostile core in a sandbox of its own.

A core, its executable, its libraries and their DWARF come from whoever
crashed: gdb and the ELF parsers must not read them with root's rights. A
``Sandbox`` forks a child that, before it runs any of our parsing code:

- enters new mount, IPC, UTS, PID and network namespaces (only a down
  loopback: debug info from debuginfod is fetched by the parent and handed
  in, ``coretriage.debuginfod``);
- sees the whole file system read-only, its own ``/proc``, empty read-only
  directories over the data dir (the database, the spool, every other
  crash) and ``/root``/``/home``, and as ``/tmp`` a scratch directory:
  ``/tmp/in`` (read-only) holds copies of the inputs, ``/tmp/work`` is the
  only place it can write;
- drops to an unprivileged user (as root: the ``coretriage-sandbox`` system
  user ``host-setup install`` creates, else ``nobody``; otherwise the
  caller's own uid inside a user namespace), no supplementary groups, an
  empty capability bounding set, NO_NEW_PRIVS, resource limits, and only the
  two pipes to its parent open.

The parent copies the inputs in (the store keeps them root-only, so the
sandbox user could not read them where they are), sends the job as JSON and
reads the answer as JSON. A child that cannot build the sandbox answers with
a one-line ``SandboxError``: analysis never falls back to running unconfined.

The child is forked (not exec'd) so it costs milliseconds, and ``start``
can be called early: the namespaces are built, and the handler's ``prepare``
(gdb's start-up) runs, while the caller is still busy elsewhere.

Standard library only (ctypes for the system calls Python 3.11 lacks).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import importlib
import json
import os
import pwd
import re
import resource
import select
import shutil
import signal
import socket
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.errors import CoretriageError

SANDBOX_USER = "coretriage-sandbox"  # made by `coretriage host-setup install`
FALLBACK_USER = "nobody"
INSIDE = Path("/tmp")  # where the scratch directory appears inside
INPUTS = INSIDE / "in"
WORK = INSIDE / "work"

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same on every architecture
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

EXIT_SETUP = 70  # the child could not build the sandbox
MAX_REQUESTS = 512  # a child asking for more is not answered
MAX_ANSWER = 512 << 20  # bytes of JSON in one message from the child


class SandboxError(CoretriageError):
    """The sandbox could not be built, or its child died: nothing was analyzed."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of everything in the sandbox (gdb also gets its own
    address-space limit through ``GdbBudget``)."""

    memory: int = 4 << 30  # address space per process, bytes
    cpu: int = 600  # CPU seconds per process
    file_size: int = 1 << 30  # largest file it may write, bytes
    open_files: int = 1024
    processes: int = 64  # per sandbox user, as root only: a user namespace shares the caller's uid


@dataclass(frozen=True)
class SandboxPolicy:
    user: str | None = None  # as root: None picks SANDBOX_USER, else FALLBACK_USER
    network: bool = False  # keep the host's network; else (always, for analyses) a new, empty namespace
    hide: tuple[str, ...] = ()  # directories covered by an empty one (the data dir)
    scratch_parent: str | None = None  # where scratch dirs are made (default: the system temp dir)
    limits: Limits = field(default_factory=Limits)
    env: tuple[tuple[str, str], ...] = ()  # extra environment

    @classmethod
    def default(cls, data_dir: Path | str | None = None, scratch_parent: Path | str | None = None,
                memory: int | None = None) -> "SandboxPolicy":
        """No network (debug info is fetched outside and handed in), the data dir hidden."""
        hide = tuple(dict.fromkeys(str(p) for p in (
            [Path(data_dir).absolute(), Path(data_dir).resolve()] if data_dir else [])))
        limits = Limits(memory=max(memory, 1 << 30)) if memory else Limits()
        return cls(network=False, hide=hide, limits=limits,
                   scratch_parent=str(scratch_parent) if scratch_parent else None)


def analysis_sandbox(budget=None, policy: SandboxPolicy | None = None) -> "Sandbox":
    """The sandbox ``analyzer.confined.analyze_core`` runs in, not started yet.
    Light to import, so a cold CLI can start it before its own imports."""
    from analyzer.gdb import GdbBudget

    budget = budget or GdbBudget()
    policy = policy or SandboxPolicy.default(memory=budget.memory)
    # gdb's own limits may only be lower than the sandbox's
    limits = dataclasses.replace(policy.limits, memory=max(policy.limits.memory, budget.memory),
                                 cpu=max(policy.limits.cpu, int(budget.timeout) + 60))
    policy = dataclasses.replace(policy, limits=limits)
    return Sandbox(policy, "analyzer.analyze:_job", "analyzer.gdb:EarlyGdb", (budget.timeout, budget.memory),
                   deadline=budget.timeout + 60, on_request="analyzer.confined:_grant_host_file")


# -- system calls Python 3.11 does not have -------------------------------

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _unshare(flags: int) -> None:
    _check(_c().unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_c().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _mount_setattr(path: str, set_: int, clear: int = 0, recursive: bool = False) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    try:
        _check(_c().syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                            ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(attr),
                            ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr {path}")
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        _remount_each(path, set_, clear, recursive)  # before Linux 5.12


# per-mount options as /proc/self/mountinfo shows them, and their mount(2) flags
_KEPT = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1 << 10,
         "nodiratime": 1 << 11, "relatime": 1 << 21, "strictatime": 1 << 24}
_NOTHING_TO_WRITE = {"nsfs"}  # a user namespace may not remount a namespace file; nothing there is writable
_ATTR_FLAGS = {MOUNT_ATTR_RDONLY: MS_RDONLY, MOUNT_ATTR_NOSUID: MS_NOSUID, MOUNT_ATTR_NODEV: MS_NODEV}


def _remount_each(path: str, set_: int, clear: int, recursive: bool) -> None:
    """mount_setattr by remounting each bind mount, its other flags kept
    (a user namespace may not drop the ones it inherited)."""
    set_flags = sum(f for a, f in _ATTR_FLAGS.items() if set_ & a)
    clear_flags = sum(f for a, f in _ATTR_FLAGS.items() if clear & a)
    base = path.rstrip("/") or "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
        if point != base and not (recursive and (base == "/" or point.startswith(base + "/"))):
            continue
        options = fields[5].split(",")
        flags = sum(f for name, f in _KEPT.items() if name in options) | (MS_RDONLY if "ro" in options else 0)
        flags = (flags | set_flags) & ~clear_flags
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | flags)
        except PermissionError:
            fstype = fields[fields.index("-") + 1]
            if fstype not in _NOTHING_TO_WRITE and _reachable(point):
                raise


def _reachable(path: str) -> bool:
    """Whether this process can reach ``path`` at all. A mount below a
    directory it may not search (a Docker overlay under /var/lib/docker, mode
    0710) cannot be remounted by it, nor written through: it is left as is."""
    try:
        os.stat(path)
    except PermissionError:
        return False
    except OSError:
        return True  # gone or odd: let the remount's own error speak
    return True


def _prctl(option: int, arg: int = 0) -> None:
    _check(_c().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)), f"prctl {option}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_bounding() -> None:
    """Empty the bounding set (needs CAP_SETPCAP: before giving up root)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)


def _drop_capabilities() -> None:
    """Empty ambient, effective, permitted and inheritable sets."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    data = (_CapData * 2)()
    _check(_c().capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")


# -- the parent's side ----------------------------------------------------

def sandbox_user(name: str | None = None) -> pwd.struct_passwd:
    """The user analysis runs as (when coretriage runs as root)."""
    names = [name] if name else [SANDBOX_USER, FALLBACK_USER]
    for n in names:
        try:
            return pwd.getpwnam(n)
        except KeyError:
            continue
    raise SandboxError(f"no user {' or '.join(names)} to run analysis as "
                       "(`coretriage host-setup install` creates one)")


class Sandbox:
    """``Sandbox(policy, "pkg.mod:handler", "pkg.mod:prepare", arg).start()``,
    then ``stage_file``/``stage_tree`` the inputs, ``call(job)`` once.

    In the child: ``state = prepare(arg, spawn)`` as soon as the sandbox
    is built but for the data dir, ``spawn`` being what ``subprocess.Popen``
    needs to start a process as the sandbox user (this process is still
    root); then ``handler(state, job) -> dict``. Both are named as
    ``module:function`` and imported in the child before it gives up root
    (the sandbox user may not be allowed to read the code), with the modules
    the handler's module lists in ``PRELOAD`` (those it would otherwise
    import lazily). Keep ``prepare``'s module light: the handler's is
    imported while it runs.

    ``facts`` holds what the child observed of itself, and what ``state``'s
    ``facts()`` returns after the job, if it has one."""

    def __init__(self, policy: SandboxPolicy, handler: str, prepare: str | None = None, arg=None,
                 deadline: float = 600.0, on_request=None):
        self.policy = policy
        self.handler, self.prepare, self.arg = handler, prepare, arg
        # (sandbox, request) -> reply, or its "module:function": what the child may ask for (``request``)
        self.on_request = on_request
        # build-id -> (path, note): the separate debug files the parent hands
        # in when the child asks (``analyzer.analyze``; ``coretriage.debuginfod``)
        self.symbols = None
        self.requests = 0
        self.staged_bytes = 0
        self.deadline = deadline  # seconds from start for the child's answer
        self.facts: dict = {}
        self.scratch: Path | None = None
        self.scratch_path = ""  # resolved, for the child's bind mount
        self._pid: int | None = None
        self._job_w = self._result_r = -1
        self._started = 0.0
        self._paths: list[tuple[str, str]] = []  # (inside, outside)
        self._names: set[str] = set()
        self._root = os.geteuid() == 0

    # start and stop ------------------------------------------------------
    def start(self) -> "Sandbox":
        if self._pid is not None:
            return self
        if self._root:
            user = sandbox_user(self.policy.user)
            uid, gid = user.pw_uid, user.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        parent = Path(self.policy.scratch_parent or tempfile.gettempdir())
        try:
            _make_private_dirs(parent)
            self.scratch = Path(tempfile.mkdtemp(dir=parent, prefix="sandbox-"))
            os.chmod(self.scratch, 0o755)  # reached only through the bind mount inside
            (self.scratch / "in").mkdir()
            os.chmod(self.scratch / "in", 0o755)  # whatever the umask: the sandbox user reads in/
            (self.scratch / "work").mkdir(mode=0o700)
            os.chown(self.scratch / "work", uid, gid)
        except OSError as exc:
            self._cleanup()
            raise SandboxError(f"cannot make the analysis sandbox's scratch directory in {parent}: "
                               f"{exc.strerror}") from None
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        scratch_fd = os.open(self.scratch, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.scratch_path = str(self.scratch.resolve())
        self._started = time.monotonic()
        caller = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; tested through its behaviour
            try:
                os.close(job_w)
                os.close(result_r)
                _child(self, uid, gid, job_r, result_w, scratch_fd, caller)
            finally:
                os._exit(EXIT_SETUP)
        os.close(job_r)
        os.close(result_w)
        os.close(scratch_fd)
        self._pid, self._job_w, self._result_r = pid, job_w, result_r
        return self

    def close(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None
        for fd in (self._job_w, self._result_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._job_w = self._result_r = -1
        self._cleanup()

    def _cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)  # fd-based: safe against links planted in work/
            self.scratch = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # inputs ---------------------------------------------------------------
    def _inside(self, name: str) -> tuple[Path, Path]:
        if self.scratch is None:
            raise SandboxError("the sandbox is not started")
        if "/" in name or name in ("", ".", "..") or name in self._names:
            raise ValueError(f"bad or repeated input name {name!r}")
        self._names.add(name)
        return self.scratch / "in" / name, INPUTS / name

    def stage_file(self, source: Path | str, name: str) -> str:
        """Copy a file in (read with the caller's rights); its path inside."""
        src = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(source))
            return self.stage_fd(src, source, name)
        finally:
            os.close(src)

    def stage_fd(self, src: int, source: Path | str, name: str) -> str:
        """Copy an open regular file in, named ``source`` outside; its path inside."""
        dest, inside = self._inside(name)
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(out, 0o644)  # the coretriage command runs under umask 077
            _copy_fd(src, out)
            self.staged_bytes += os.fstat(out).st_size
        finally:
            os.close(out)
        self._paths.append((str(inside), str(Path(source).absolute())))
        return str(inside)

    def visible(self, path: Path | str) -> bool:
        """Whether the sandbox can read ``path`` where it is: not under a
        directory hidden inside, and every directory on the way searchable
        (and the last readable) by the sandbox user."""
        path = Path(os.path.realpath(path))
        hidden = [INSIDE, Path("/root"), Path("/home"), *(Path(os.path.realpath(h)) for h in self.policy.hide)]
        if any(h == path or h in path.parents for h in hidden):
            return False
        if not self._root:
            return os.access(path, os.R_OK | os.X_OK)
        try:
            return all(os.stat(p).st_mode & 0o005 == 0o005 for p in (path, *path.parents))
        except OSError:
            return False

    def stage_tree(self, source: Path | str, name: str) -> str:
        """A directory tree for the sandbox: where it is when the sandbox
        user can read it there (a host sysroot may be large), else a copy of
        its directories, regular files and symlinks (as links, resolved
        inside); its path inside."""
        if self.visible(source):
            return str(Path(source).absolute())
        dest, inside = self._inside(name)
        _copy_tree(Path(source), dest)
        self._paths.append((str(inside), str(Path(source).absolute())))
        return str(inside)

    def outside(self, text: str) -> str:
        """A path (or a message naming one) as the caller knows it."""
        for inside, out in sorted(self._paths, key=lambda p: -len(p[0])):
            # the whole path, or its start: /tmp/in/core, never /tmp/in/core2
            text = re.sub(re.escape(inside) + r"(?=/|[^\w.+@-]|$)", lambda _: out, text)
        return text

    # the call ---------------------------------------------------------------
    def call(self, job: dict) -> dict:
        """Send the job, wait for the handler's answer (within the deadline)."""
        self.start()
        try:
            self._send(job)
            answer = None
            for line in self._lines():
                try:
                    message = json.loads(line)
                except ValueError:
                    break
                if isinstance(message, dict) and "request" in message and self.requests < MAX_REQUESTS:
                    self.requests += 1
                    grant = _resolve(self.on_request) if isinstance(self.on_request, str) else self.on_request
                    self._send(grant(self, message["request"]) if grant else None)
                    continue
                answer = message
                break
            status = self._reap()
        finally:
            self.close()  # one job per sandbox: a second core gets a fresh one
        if not isinstance(answer, dict):
            raise SandboxError(f"the analysis sandbox died without an answer ({_describe(status)})")
        self.facts = answer.get("facts") or {}
        if "error" in answer:  # from a child that read hostile files: one line, printable, bounded
            text = " ".join(str(answer["error"]).split())
            raise SandboxError("".join(c if c.isprintable() else "?" for c in text)[:500])
        return answer["result"]

    def _send(self, message) -> None:
        try:
            data = memoryview((json.dumps(message) + "\n").encode())
            while data:
                data = data[os.write(self._job_w, data):]
        except BrokenPipeError:
            pass  # the child already failed: its answer says why

    def _lines(self):
        """The child's messages, one JSON document a line, within the deadline."""
        buffer = b""
        end = self._started + self.deadline
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line
            left = end - time.monotonic()
            if left <= 0:
                self.close()
                raise SandboxError(f"the analysis sandbox did not answer within {self.deadline:g} s")
            ready, _, _ = select.select([self._result_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._result_r, 1 << 20)
            if not chunk:
                if buffer:
                    yield buffer
                return
            buffer += chunk
            if len(buffer) > MAX_ANSWER:
                self.close()
                raise SandboxError(f"the analysis sandbox's answer is larger than {MAX_ANSWER >> 20} MiB")

    def _reap(self) -> int:
        pid, self._pid = self._pid, None
        _, status = os.waitpid(pid, 0)
        return status


def _make_private_dirs(path: Path) -> None:
    """mkdir -p, every directory it makes 0700 (they may be the data dir's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _copy_fd(src: int, out: int) -> None:
    """In the kernel where it can (copy_file_range: a reflink on XFS or btrfs)."""
    os.lseek(src, 0, os.SEEK_SET)
    try:
        while os.copy_file_range(src, out, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(out, 0, os.SEEK_SET)
    os.ftruncate(out, 0)
    while chunk := os.read(src, 1 << 20):
        os.write(out, chunk)


def _copy_tree(source: Path, dest: Path, depth: int = 0) -> None:
    if depth > 64:
        return
    os.mkdir(dest)
    os.chmod(dest, 0o755)  # whatever the umask: the sandbox user reads the copy
    with os.scandir(source) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir(follow_symlinks=False):
                _copy_tree(Path(entry.path), target, depth + 1)
            elif entry.is_file(follow_symlinks=False):
                src = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o644)
                    try:
                        os.fchmod(out, 0o644)
                        _copy_fd(src, out)
                    finally:
                        os.close(out)
                finally:
                    os.close(src)


# -- the child's side -----------------------------------------------------

def _child(box: Sandbox, uid: int, gid: int, job_r: int, result_w: int, scratch_fd: int, caller: int) -> None:
    """Fork-side entry. Never returns: exits with the handler's answer written.

    The order is for speed without a gap: ``prepare`` (gdb's start-up) runs
    as soon as the namespaces, the read-only view, the limits and
    NO_NEW_PRIVS are in place, as the sandbox user; the handler's code is
    imported while it starts (as root: the sandbox user may not be able to
    read it, /root/.pyenv, and /tmp may hold the venv); then the scratch dir
    covers /tmp, the data dir and homes are hidden (from gdb too: one mount
    namespace) and this process gives up root. Only then is the job, and so
    any hostile input, read."""
    def answer(payload: dict, code: int) -> None:
        data = (json.dumps(payload) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(result_w, view):]
        os._exit(code)

    step = "setting up"
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # the caller already gone (reparented); not "ppid is 1": a caller that
        # is PID 1 itself, as a worker in a container without --init, is fine
        if os.getppid() != caller:
            os._exit(EXIT_SETUP)
        _only_fds(job_r, result_w, scratch_fd)
        policy = box.policy
        flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
        if not policy.network:
            flags |= CLONE_NEWNET
        step = "creating its namespaces"
        if os.geteuid() == 0:
            _unshare(flags)
        else:
            _unshare(flags | CLONE_NEWUSER)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        # The new PID namespace applies to children: the sandbox proper is
        # its first process (its PID 1), so everything in it dies with it.
        pid = os.fork()
        if pid:
            os.close(job_r)
            os.close(result_w)
            os.close(scratch_fd)
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF if not os.WIFSIGNALED(status) else 128)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        step = "building its file system view"
        _read_only()
        with contextlib.suppress(OSError):
            socket.sethostname("coretriage-sandbox")
        os.chdir("/")
        step = "limiting it"
        as_root = os.geteuid() == 0
        _limits(policy.limits, as_root)
        _drop_bounding()  # in a user namespace too: the caller's uid holds every capability there
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _environment(policy)
        step = "starting gdb"
        # what subprocess needs to start a process as the sandbox user while this one is still root
        spawn = {"user": uid, "group": gid, "extra_groups": []} if as_root and uid != 0 else {}
        prepare = _resolve(box.prepare) if box.prepare else None
        state = prepare(box.arg, spawn) if prepare else None
        step = "importing its code"
        handler = _resolve(box.handler)
        for name in getattr(importlib.import_module(handler.__module__), "PRELOAD", ()):
            importlib.import_module(name)
        step = "building its file system view"
        # only now over /tmp and the data dir: the code just imported may live there (a venv in /tmp)
        _scratch(box.scratch_path, scratch_fd)
        os.close(scratch_fd)
        _hide(policy)
        os.chdir(WORK)
        step = "dropping privileges"
        _drop(uid, gid)
        facts = {"self": process_facts("self")}
    except Exception as exc:  # noqa: BLE001 - any failure here is the one-line answer
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = ""
        if os.geteuid() != 0 and step == "creating its namespaces":
            hint = (" (unprivileged user namespaces are off on this host, or a container's seccomp profile "
                    "forbids them: run as root, enable them, or run the container with --security-opt "
                    "seccomp=unconfined --security-opt systempaths=unconfined)")
        answer({"error": f"cannot build the analysis sandbox while {step}: {detail}{hint}"}, EXIT_SETUP)
        return

    try:
        global _channel
        _channel = (os.fdopen(job_r, "rb"), result_w)
        job = json.loads(_channel[0].readline() or b"null")
        if job is None:
            os._exit(0)
        result = handler(state, job)
        if hasattr(state, "facts"):
            facts.update(state.facts())
        answer({"result": result, "facts": facts}, 0)
    except Exception as exc:  # noqa: BLE001 - a bug in the handler: say so in one line
        answer({"error": f"analysis failed in its sandbox: {type(exc).__name__}: {exc}", "facts": facts}, 1)


_channel = None  # in the sandbox's child: (the job pipe, the answer pipe)


def request(payload: dict):
    """From inside the sandbox: ask the parent (its ``on_request``) for
    something, e.g. a host file only root may read; its reply, or None
    (outside a sandbox, or refused)."""
    if _channel is None:
        return None
    data = memoryview((json.dumps({"request": payload}) + "\n").encode())
    while data:
        data = data[os.write(_channel[1], data):]
    line = _channel[0].readline()
    return json.loads(line) if line else None


def _resolve(name: str):
    module, _, func = name.partition(":")
    return getattr(importlib.import_module(module), func)


def _only_fds(*keep: int) -> None:
    """Nothing the caller had open (the database, sockets, the terminal)
    stays reachable: stdio to /dev/null, every other descriptor closed."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _read_only() -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's only
    _mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, recursive=True)


def _scratch(scratch: str, scratch_fd: int) -> None:
    """The scratch dir over /tmp: its top and in/ (the inputs) belong to root
    and are read-only, work/ is the one writable place. By path, as a bind
    mount's source must be in this namespace, checked against the directory
    the parent made."""
    _mount(scratch, str(INSIDE), None, MS_BIND)
    made, seen = os.fstat(scratch_fd), os.stat(INSIDE)
    if (made.st_dev, made.st_ino) != (seen.st_dev, seen.st_ino):
        raise OSError(errno.EXDEV, f"{scratch} was replaced")
    _mount_setattr(str(INSIDE), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY)
    _mount(str(INPUTS), str(INPUTS), None, MS_BIND)
    _mount_setattr(str(INPUTS), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)


def _hide(policy: SandboxPolicy) -> None:
    """Empty read-only directories over the data dir and the homes (every
    process in the namespace, gdb already running included, sees them)."""
    for path in dict.fromkeys([*policy.hide, "/root", "/home"]):
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")


def _limits(limits: Limits, as_root: bool) -> None:
    for which, value in ((resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_CPU, limits.cpu),
                         (resource.RLIMIT_FSIZE, limits.file_size), (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MEMLOCK, 0)):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    if as_root:  # per real uid: only the sandbox's own user is counted
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _drop(uid: int, gid: int) -> None:
    """This process gives up root (the bounding set is already empty)."""
    if os.geteuid() == 0 and uid != 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to a user: effective and permitted sets are emptied
    _drop_capabilities()
    # this process is a copy of the caller's memory (settings, a database
    # URL): gdb, running as the same user, must not be able to read it
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # changing credentials cleared it
    if os.getuid() == 0 and uid != 0:
        raise OSError(errno.EPERM, "still root")


def _environment(policy: SandboxPolicy) -> None:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    os.environ.update(HOME=str(WORK), TMPDIR=str(WORK), XDG_CACHE_HOME=str(WORK / ".cache"))
    os.environ.update(dict(policy.env))
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def process_facts(pid: int | str) -> dict:
    """What the kernel says about a process's confinement (from /proc)."""
    base = Path("/proc") / str(pid)
    out: dict = {}
    try:
        for line in (base / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Name", "VmHWM", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                       "NoNewPrivs", "Seccomp"):
                out[key] = value.strip()
    except OSError:
        pass
    out["ns"] = {}
    for ns in ("mnt", "net", "ipc", "uts", "pid", "user"):
        with contextlib.suppress(OSError):
            out["ns"][ns] = os.readlink(base / "ns" / ns)
    return out
