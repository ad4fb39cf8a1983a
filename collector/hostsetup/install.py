"""``coretriage host-setup install`` and ``uninstall``.

Install points kernel.core_pattern at the collector's pipe handler (through a
short wrapper script when the command does not fit in core_pattern's 127
characters), sets kernel.core_pipe_limit, persists both in
/etc/sysctl.d/50-coretriage.conf, adds an unlimited default core ulimit to
/etc/docker/daemon.json, LimitCORE=infinity drop-ins for docker and
containerd, and the collector's systemd unit, and creates the system user
analysis runs as (``coretriage-sandbox``; uninstall keeps it). Everything it is about to change
is recorded first, with the previous value, in ``<data-dir>/host-setup.json``;
uninstall puts each thing back exactly and removes what install created.

Nothing is restarted. ``systemctl daemon-reload`` runs only when systemd is
PID 1 and the root is the real one.

Install refuses, before changing anything, when a user other than root
could change what then runs as root: the data dir and every directory or
symlink on its path, the handler, and the Python of the handler and of the
collector unit with its venv, sys.path, editable source dir and packages
(``collector.hostsetup.trust``). The data dir and what install puts in it
(the wrapper, the record) are 0700/0600.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from collector.hostsetup import procfs, record, render
from collector.corepattern import PatternPlan, classify, pattern_lock, plan_core_pattern
from collector.hostsetup.daemonjson import merge_core_ulimit
from collector.hostsetup.errors import HostSetupError, OtherHandlerError
from collector.hostsetup.fsutil import atomic_write, missing_dirs, restore, snapshot
from collector.pathtrust import untrusted_path
from collector.hostsetup.trust import PACKAGES, untrusted_python
from collector.hostsetup.record import FileChange, SetupRecord, SysctlChange

CORE_PIPE_LIMIT = render.CORE_PIPE_LIMIT
SYSCTL_CONF = "etc/sysctl.d/50-coretriage.conf"
DAEMON_JSON = "etc/docker/daemon.json"
DAEMON_JSON_BACKUP = "etc/docker/daemon.json.coretriage-backup"
DOCKER_DROPIN = "etc/systemd/system/docker.service.d/coretriage.conf"
CONTAINERD_DROPIN = "etc/systemd/system/containerd.service.d/coretriage.conf"
COLLECTOR_UNIT = "etc/systemd/system/coretriage-collector.service"
WRAPPER = "bin/coretriage-core-handler"  # under the data dir


@dataclass(frozen=True)
class InstallReport:
    data_dir: Path
    core_pattern: str
    previous_core_pattern: str  # before this run
    replaced_handler: str | None  # "Apport (/usr/share/apport/apport)" when --replace took it over
    wrapper: Path | None  # the wrapper script, when the command was too long for core_pattern
    changes: tuple[str, ...]
    record: Path
    next_steps: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [f"core_pattern: {self.core_pattern}"]
        if self.replaced_handler:
            lines.append(f"replaced {self.replaced_handler}; `coretriage host-setup uninstall` gives it back")
        if self.wrapper:
            lines.append(f"the handler command is run through {self.wrapper}")
        lines += [f"changed: {c}" for c in self.changes] or ["nothing to change: already installed"]
        lines.append(f"recorded in {self.record}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"next: {s}" for s in self.next_steps]
        return "\n".join(lines)


@dataclass(frozen=True)
class UninstallReport:
    restored: tuple[str, ...]
    left: tuple[str, ...]  # changed by someone else since install: left as is (see force=True)
    next_steps: tuple[str, ...]
    record: Path | None  # still there when something was left

    def text(self) -> str:
        lines = [f"restored: {r}" for r in self.restored] or ["nothing to restore"]
        lines += [f"left as is: {l}" for l in self.left]
        if self.record:
            lines.append(f"what was left is still recorded in {self.record} "
                         "(`coretriage host-setup uninstall --force` restores it anyway)")
        lines += [f"next: {s}" for s in self.next_steps]
        return "\n".join(lines)


def systemd_is_pid1(proc: Path = Path("/proc")) -> bool:
    return (procfs.read_text(Path(proc) / "1" / "comm") or "").strip() == "systemd"


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class _FileWrite:
    path: Path
    content: bytes
    mode: int
    what: str


def _under_pattern_lock(fn):
    """Read, decide and write core_pattern as one step among the tools that
    change it (tests, benchmarks, another install). Only the real /proc: a
    fake tree in a test is nobody else's."""
    @functools.wraps(fn)
    def locked(*args, proc: Path = Path("/proc"), **kwargs):
        with pattern_lock() if Path(proc) == Path("/proc") else contextlib.nullcontext():
            return fn(*args, proc=proc, **kwargs)
    return locked


@_under_pattern_lock
def install(data_dir: Path, handler_argv: list[str], *, replace_existing: bool = False,
            root: Path = Path("/"), proc: Path = Path("/proc"), python: str | None = None,
            core_pipe_limit: int = CORE_PIPE_LIMIT, socket: Path | None = None) -> InstallReport:
    """Set the host up for coretriage. Refuses (changing nothing) when
    core_pattern belongs to another handler unless ``replace_existing``, when
    daemon.json is not valid JSON, or when the handler command cannot be made
    into a core_pattern. ``python`` runs the collector unit (default: this one).
    With ``socket`` (Linux 6.16+), cores go to the collector daemon listening
    there (``@socket``) instead of a handler the kernel starts per crash."""
    data_dir, root, proc = Path(data_dir).absolute(), Path(root).absolute(), Path(proc)
    python = python or sys.executable
    try:
        old = record.load(data_dir)
    except ValueError as exc:
        raise HostSetupError(str(exc)) from None
    if old is not None and old.root != str(root):
        raise HostSetupError(f"{record.record_path(data_dir)} was made for root {old.root}, not {root}")

    # 1. Decide everything; nothing is changed until every check has passed.
    try:
        current_pattern = procfs.read_sysctl(proc, "kernel.core_pattern")
        current_limit = procfs.read_sysctl(proc, "kernel.core_pipe_limit")
    except OSError as exc:
        raise HostSetupError(f"cannot read kernel.core_pattern under {proc}: {exc}") from None
    pattern = classify(current_pattern, old.core_pattern if old else None)
    replaced = None
    if pattern.is_other_handler:
        if not replace_existing:
            raise OtherHandlerError(
                f"kernel.core_pattern belongs to {pattern.describe()}: {pattern.raw!r}. "
                "coretriage would take every core from it; run `coretriage host-setup install --replace` "
                "to replace it (`coretriage host-setup uninstall` gives it back)")
        replaced = pattern.describe()

    wrapper_path = data_dir / WRAPPER
    try:
        plan = PatternPlan(f"@{socket}") if socket else plan_core_pattern(handler_argv, str(wrapper_path))
    except ValueError as exc:
        raise HostSetupError(f"cannot make a core_pattern of the handler command: {exc}") from None
    _refuse_untrusted(data_dir, None if socket else handler_argv, python)

    writes: list[_FileWrite] = []
    if plan.wrapper_command is not None:
        writes.append(_FileWrite(wrapper_path, render.wrapper_script(plan.wrapper_command).encode(), 0o700,
                                 f"wrapper for the handler command ({plan.reason})"))
    writes.append(_FileWrite(root / SYSCTL_CONF, render.sysctl_conf(plan.pattern, core_pipe_limit).encode(),
                             0o644, "kernel.core_pattern and core_pipe_limit at boot"))
    daemon_json = root / DAEMON_JSON
    daemon_snap = snapshot(daemon_json)
    merged = merge_core_ulimit(daemon_snap.content.decode("utf-8", "replace") if daemon_snap.exists else None,
                               where=str(daemon_json))
    if merged.changed:
        backup = root / DAEMON_JSON_BACKUP
        if daemon_snap.exists and not (old and old.file(str(backup))):
            writes.append(_FileWrite(backup, daemon_snap.content, daemon_snap.mode or 0o644,
                                     f"backup of {daemon_json}"))
        writes.append(_FileWrite(daemon_json, merged.text.encode(), daemon_snap.mode or 0o644,
                                 "default-ulimits core unlimited for new containers"))
    dropin = render.limitcore_dropin().encode()
    writes.append(_FileWrite(root / DOCKER_DROPIN, dropin, 0o644, "LimitCORE=infinity for dockerd"))
    writes.append(_FileWrite(root / CONTAINERD_DROPIN, dropin, 0o644, "LimitCORE=infinity for containerd"))
    writes.append(_FileWrite(root / COLLECTOR_UNIT, render.collector_unit(python, data_dir, socket=socket is not None).encode(), 0o644,
                             "the collector service"))

    snaps = {w.path: (daemon_snap if w.path == daemon_json else snapshot(w.path)) for w in writes}
    writes = [w for w in writes if not (snaps[w.path].exists and snaps[w.path].content == w.content
                                        and snaps[w.path].mode == w.mode)]
    dirs: list[Path] = []
    for p in [record.record_path(data_dir), *(w.path for w in writes)]:
        dirs += [d for d in missing_dirs(p) if d not in dirs]

    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    new = SetupRecord(
        data_dir=str(data_dir), root=str(root), installed_at=now,
        history=(f"{now} install: core_pattern {plan.pattern!r}" + (f", replaced {replaced}" if replaced else ""),),
        sysctls=(SysctlChange("kernel.core_pipe_limit", current_limit, str(core_pipe_limit)),
                 SysctlChange("kernel.core_pattern", current_pattern, plan.pattern)),
        files=tuple(FileChange(str(w.path), snaps[w.path], _sha(w.content)) for w in writes),
        created_dirs=tuple(str(d) for d in dirs))
    rec = record.merge(old, new)

    # 2. Record first, then change: a failure half-way can still be undone.
    for d in dirs:
        d.mkdir(mode=0o700)
        d.chmod(0o700 if d == data_dir or data_dir in d.parents else 0o755)  # not the umask's
    rec_path = record.save(data_dir, rec)
    changes = []
    try:
        for w in writes:
            atomic_write(w.path, w.content, mode=w.mode, uid=0 if os.geteuid() == 0 else None,
                         gid=0 if os.geteuid() == 0 else None)
            changes.append(f"{'updated' if snaps[w.path].exists else 'created'} {w.path}: {w.what}")
        user = ensure_sandbox_user(root)
        if user:
            changes.append(user)
        for key, value in (("kernel.core_pipe_limit", str(core_pipe_limit)), ("kernel.core_pattern", plan.pattern)):
            before = procfs.read_sysctl(proc, key)
            if before != value:
                procfs.write_sysctl(proc, key, value)
                changes.append(f"{key}: {before!r} -> {value!r}")
    except (OSError, HostSetupError) as exc:
        raise HostSetupError(f"install failed half-way ({exc}); `coretriage host-setup uninstall` "
                             f"undoes what was done (recorded in {rec_path})") from None

    return InstallReport(data_dir=data_dir, core_pattern=plan.pattern, previous_core_pattern=current_pattern,
                         replaced_handler=replaced,
                         wrapper=wrapper_path if plan.wrapper_command is not None else None,
                         changes=tuple(changes), record=rec_path,
                         next_steps=tuple(_after_install(root, proc, merged.changed or bool(writes))),
                         warnings=tuple(_dockerd_flag_conflicts(proc)))


def _refuse_untrusted(data_dir: Path, handler_argv: list[str] | None, python: str) -> None:
    """Refuse, before anything changes, when a user other than root could
    change what runs as root: the data dir (the handler writes there, reads
    its policy there, and the kernel may run the wrapper from there), the
    handler the kernel starts on every crash, or the Python of either the
    handler or the collector unit, with everything they import."""
    why = untrusted_path(data_dir)
    if why:
        raise HostSetupError(f"the data dir {data_dir} is not root's alone: {why}; "
                             "choose a data directory only root can write to")
    if handler_argv is not None:
        argv0 = handler_argv[0]
        is_python = "collector.handler" in handler_argv
        why = untrusted_python(argv0) if is_python else untrusted_path(argv0)
        if why:
            raise HostSetupError(f"the kernel would run {argv0} as root on every crash, but {why}")
    why = untrusted_python(python, (*PACKAGES, "coretriage"))
    if why:
        raise HostSetupError(f"the collector service would run {python} as root, but {why}")


SANDBOX_USER = "coretriage-sandbox"  # analyzer.sandbox.SANDBOX_USER: the collector may not import it


def ensure_sandbox_user(root: Path) -> str | None:
    """The system user analysis runs as (``analyzer/sandbox.py``; it falls
    back to ``nobody``, which other services may share). Only on the real
    root, as root; kept on uninstall, as packages keep their system users."""
    import pwd

    if root != Path("/") or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SANDBOX_USER)
        return None
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise HostSetupError(f"cannot create the {SANDBOX_USER} user (no useradd): create a system user "
                             f"{SANDBOX_USER} with no login, or analysis runs as nobody")
    r = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--comment", "coretriage analysis sandbox", SANDBOX_USER],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise HostSetupError(f"useradd {SANDBOX_USER} failed: {r.stderr.strip()}")
    return f"created the system user {SANDBOX_USER}: analysis of cores runs as it"


def _systemctl(root: Path, proc: Path, *args: str) -> str | None:
    """Run systemctl only on the real root with systemd as PID 1; the outcome as a line."""
    systemctl = shutil.which("systemctl")
    if root != Path("/") or not systemctl or not systemd_is_pid1(proc):
        return None
    r = subprocess.run([systemctl, *args], capture_output=True, text=True, timeout=60)
    return f"systemctl {' '.join(args)}: " + ("done" if r.returncode == 0 else f"failed: {r.stderr.strip()}")


def _after_install(root: Path, proc: Path, changed: bool) -> list[str]:
    steps = []
    reloaded = _systemctl(root, proc, "daemon-reload") if changed else None
    if reloaded:
        steps.append(reloaded)
    elif changed:
        steps.append("systemd is not PID 1 here (or the root is not /): `systemctl daemon-reload` was not run")
    steps += [
        "restart containerd and dockerd (systemctl restart containerd docker) for LimitCORE and "
        "default-ulimits to apply to new containers; running containers keep their core limit until recreated",
        "start the collector: systemctl enable --now coretriage-collector.service",
        "check the host: coretriage host-setup doctor",
    ]
    return steps


def _dockerd_flag_conflicts(proc: Path) -> list[str]:
    out = []
    for pid in procfs.find_by_comm(proc, "dockerd"):
        if any(a.startswith("--default-ulimit") for a in procfs.cmdline(proc, pid)):
            out.append(f"dockerd (pid {pid}) is started with --default-ulimit; with default-ulimits also in "
                       "daemon.json it will refuse to start: remove the flag")
    return out


@_under_pattern_lock
def uninstall(data_dir: Path, *, root: Path = Path("/"), proc: Path = Path("/proc"),
              force: bool = False) -> UninstallReport:
    """Put back everything the record lists. A sysctl or file that someone
    changed after install is left as is (and stays recorded) unless ``force``."""
    data_dir, root, proc = Path(data_dir).absolute(), Path(root).absolute(), Path(proc)
    try:
        rec = record.load(data_dir)
    except ValueError as exc:
        raise HostSetupError(str(exc)) from None
    if rec is None:
        raise HostSetupError(f"nothing to uninstall: {record.record_path(data_dir)} does not exist")
    if rec.root != str(root):
        raise HostSetupError(f"{record.record_path(data_dir)} was made for root {rec.root}, not {root}")

    restored, left = [], []
    left_sysctls, left_files = [], []
    for s in reversed(rec.sysctls):
        now = procfs.read_sysctl(proc, s.key)
        if now == s.previous:
            continue
        if now != s.installed and not force:
            left.append(f"{s.key} is {now!r}, not what install set ({s.installed!r}); previous {s.previous!r}")
            left_sysctls.append(s)
            continue
        procfs.write_sysctl(proc, s.key, s.previous)
        restored.append(f"{s.key}: {now!r} -> {s.previous!r}")
    for f in reversed(rec.files):
        path = Path(f.path)
        snap = snapshot(path)
        if snap.exists and f.installed_sha256 and _sha(snap.content) != f.installed_sha256 and not force:
            left.append(f"{path} was changed after install")
            left_files.append(f)
            continue
        done = restore(path, f.previous)
        restored.append(f"{path}: {done}")

    rec_path: Path | None = record.record_path(data_dir)
    if left:
        record.save(data_dir, replace(rec, sysctls=tuple(left_sysctls), files=tuple(left_files)))
    else:
        rec_path.unlink()
        rec_path = None
        for d in reversed(rec.created_dirs):
            try:
                Path(d).rmdir()
                restored.append(f"{d}: removed (empty directory install created)")
            except OSError:
                pass  # not empty (someone else's files) or already gone

    steps = []
    reloaded = _systemctl(root, proc, "daemon-reload")
    if reloaded:
        steps.append(reloaded)
    steps += ["stop the collector if it runs: systemctl disable --now coretriage-collector.service",
              "restart containerd and dockerd for their previous core limits to apply"]
    return UninstallReport(restored=tuple(restored), left=tuple(left), next_steps=tuple(steps), record=rec_path)
