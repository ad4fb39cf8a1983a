"""Doctor checks as pure functions: facts in, ``Check`` out. ``doctor.py``
gathers the facts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from collector.hostsetup.clock import ClockStatus
from collector.hostsetup.containers import INITS, ContainerInfo
from collector.corepattern import APPORT, CorePattern
from collector.hostsetup.procfs import HostProcess
from collector.hostsetup.render import CORE_PIPE_LIMIT
from collector.hostsetup.uwsgi import how_to_set

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"})
SIGTERM = 15
MiB = 1 << 20
GiB = 1 << 30

FIX_INSTALL = "coretriage host-setup install"
FIX_REPLACE = "coretriage host-setup install --replace"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    message: str
    fix: str = ""


def core_pattern_check(p: CorePattern, *, handler_exists: bool | None, recorded: str | None) -> Check:
    """``handler_exists``: whether the pipe handler's path exists on the host;
    ``recorded``: the pattern this data dir's install wrote, if any."""
    name = "core_pattern"
    if p.kind == "empty":
        return Check(name, FAIL, "kernel.core_pattern is empty: no core is written anywhere", FIX_INSTALL)
    if p.kind == "file":
        where = ("relative to each crashing process's working directory" if not p.raw.startswith("/")
                 else "inside the crashing process's own mount namespace")
        return Check(name, WARN, f"kernel.core_pattern is a file path ({p.raw!r}): cores are written {where}, "
                                 "so a container's core lands in its own filesystem (or nowhere if the "
                                 "directory does not exist there) and coretriage never sees it", FIX_INSTALL)
    if p.kind == "pipe" and handler_exists is False:
        who = f"{p.owner}'s handler" if p.owner else "the pipe handler"
        extra = " (Ubuntu's default pipes cores to Apport; where Apport is missing every core is lost)" \
            if p.owner == APPORT else ""
        fix = FIX_INSTALL if p.is_coretriage else FIX_REPLACE
        return Check(name, FAIL, f"kernel.core_pattern pipes to {who} {p.handler}, which does not exist: "
                                 f"every core is lost{extra}", fix)
    if p.is_coretriage:
        if recorded is not None and p.raw.strip() == recorded.strip():
            return Check(name, OK, f"kernel.core_pattern pipes cores to coretriage ({p.handler})")
        return Check(name, WARN, f"kernel.core_pattern looks like coretriage's handler ({p.raw!r}) but this "
                                 "data directory's host-setup record does not list it", FIX_INSTALL)
    if p.owner:
        return Check(name, FAIL, f"kernel.core_pattern belongs to {p.describe()}: cores go there, "
                                 "not to coretriage", FIX_REPLACE)
    return Check(name, FAIL, f"kernel.core_pattern sends cores to {p.describe()}, not coretriage: "
                             f"{p.raw!r}", FIX_REPLACE)


def core_pipe_limit_check(p: CorePattern, value: str, skipped: int | None = None,
                          recommended: int = CORE_PIPE_LIMIT) -> Check | None:
    """``skipped``: crashes the kernel's log says it dropped over the limit
    in the last day (``kmsg.skipped_dumps``; None when it cannot be read)."""
    if p.kind != "pipe" or not p.is_coretriage:
        return None
    limit = value.strip()
    fix = f"sysctl kernel.core_pipe_limit={recommended} (or coretriage host-setup install)"
    if skipped:
        return Check("core_pipe_limit", FAIL, f"the kernel skipped {skipped} crash(es) in the last 24 h: more "
                                              f"crashes dumped at once than kernel.core_pipe_limit ({limit}) "
                                              "allows, and those wrote no core and reached no handler", fix)
    if limit == "0":
        return Check("core_pipe_limit", WARN, "kernel.core_pipe_limit is 0: the kernel does not wait for "
                                              "the handler, so /proc/<pid> of the crashed process may be gone "
                                              "before it is read (container id, maps, environment)", fix)
    return Check("core_pipe_limit", OK, f"kernel.core_pipe_limit is {limit}: up to {limit} crashes dump at once"
                 + ("" if skipped is None else "; none skipped in the last 24 h"))


def suid_dumpable_check(value: str) -> Check:
    v = value.strip()
    if v == "0":
        return Check("suid_dumpable", WARN, "fs.suid_dumpable is 0: set-uid programs and processes that "
                                            "changed their user id (servers that start as root and drop "
                                            "privileges) do not dump core",
                     "sysctl fs.suid_dumpable=2 (cores of such processes then go to the pipe handler only, "
                     "as root)")
    if v == "1":
        return Check("suid_dumpable", WARN, "fs.suid_dumpable is 1 (debug): privileged processes dump core "
                                            "as their own user, which can leak secrets", "sysctl fs.suid_dumpable=2")
    return Check("suid_dumpable", OK, f"fs.suid_dumpable is {v}")


def _limit_zero(label: str, name: str, info: HostProcess, p: CorePattern, fix: str) -> Check | None:
    if info.core is None or info.core.soft != 0:
        return None
    if p.kind in ("pipe", "socket"):
        return Check(name, WARN, f"{label} (pid {info.pid}) has a core size limit of 0 ({info.core}); the "
                                 "kernel ignores it while core_pattern is a pipe, but no core is written "
                                 "if core_pattern is ever a file path again", fix)
    return Check(name, FAIL, f"{label} (pid {info.pid}) has a core size limit of 0 ({info.core}): "
                             "the kernel writes no core for it", fix)


def daemon_limit_check(daemon: str, infos: list[HostProcess], p: CorePattern) -> Check:
    name = f"{daemon} core limit"
    if not infos:
        return Check(name, WARN, f"{daemon} is not running; its core limit was not checked")
    fix = (f"LimitCORE=infinity in a {daemon}.service drop-in ({FIX_INSTALL} writes one), "
           f"then systemctl daemon-reload && systemctl restart {daemon}")
    for info in infos:
        bad = _limit_zero(daemon, name, info, p, fix)
        if bad:
            return bad
    shown = ", ".join(f"pid {i.pid}: {i.core}" for i in infos if i.core) or "unreadable"
    return Check(name, OK, f"{daemon} core limit: {shown}")


def container_checks(c: ContainerInfo, info: HostProcess | None, p: CorePattern) -> list[Check]:
    label = f"container {c.label}"
    if info is None:
        return [Check(f"{label}", WARN, f"PID 1 (host pid {c.pid}) could not be read (exited?)")]
    out = []
    limit = _limit_zero(f"{label} PID 1 ({info.comm})", f"{label} core limit", info, p,
                        f"recreate it with --ulimit core=-1, or set default-ulimits in /etc/docker/daemon.json "
                        f"({FIX_INSTALL}) and restart dockerd")
    out.append(limit or Check(f"{label} core limit", OK,
                              f"PID 1 ({info.comm}) core limit: {info.core or 'unreadable'}"))
    has_init = c.init is True or info.comm in INITS
    if info.comm in SHELLS and not has_init:
        if SIGTERM in info.caught:
            out.append(Check(f"{label} PID 1", OK, f"PID 1 is {info.comm} with a SIGTERM trap"))
        else:
            out.append(Check(f"{label} PID 1", WARN,
                             f"PID 1 is {info.comm} without an init: it does not forward SIGTERM, so on "
                             "`docker stop` its children get no chance to finish and are SIGKILLed after the "
                             "timeout (jobs lost, no clean shutdown)",
                             "`exec` the server in the entrypoint script, or run the container with "
                             "`docker run --init` (tini)"))
    else:
        what = f"an init ({info.comm})" if has_init else info.comm
        out.append(Check(f"{label} PID 1", OK, f"PID 1 is {what}"))
    return out


def uwsgi_check(pid: int, argv: list[str], uses_abort: bool | None, configs: list[tuple[str, str]]) -> Check:
    """A running uwsgi master: without use-abort its SIGSEGV handler logs a
    backtrace and the worker dies without a core. ``configs``: (kind, path)
    of the config files it loads."""
    name = f"uwsgi master {pid}"
    where = f" ({', '.join(path for _, path in configs)})" if configs else ""
    if uses_abort:
        return Check(name, OK, f"uwsgi master (pid {pid}) runs with use-abort: a crashing worker leaves a core")
    fix = how_to_set(configs)
    if uses_abort is None:
        return Check(name, WARN, f"uwsgi master (pid {pid}) names a config that could not be read{where}: "
                                 "whether it runs with use-abort is unknown; without it a crashing worker "
                                 "leaves no core", fix)
    return Check(name, WARN, f"uwsgi master (pid {pid}) runs without use-abort: its SIGSEGV handler logs a "
                             "backtrace and the worker dies without a core, so its crashes are never "
                             "captured", fix)


def no_containers_check(source: str) -> Check:
    return Check("containers", OK, f"no running containers ({source})")


def free_space_check(path: str, free: int, total: int) -> Check:
    name = "free space"
    pct = 100.0 * free / total if total else 0.0
    shown = f"{free / GiB:.2f} GiB free of {total / GiB:.1f} GiB ({pct:.1f}%) on the filesystem of {path}"
    fix = "free space or move the data directory (--data-dir) to a larger filesystem"
    if free < 100 * MiB:
        return Check(name, FAIL, f"{shown}: cores will not fit", fix)
    if free < GiB or pct < 5.0:
        return Check(name, WARN, f"{shown}: large cores may not fit", fix)
    return Check(name, OK, shown)


def clock_check(s: ClockStatus) -> Check:
    fix = "run an NTP client (chrony or systemd-timesyncd) so crash times can be trusted"
    if s.synchronised is None:
        return Check("clock", WARN, f"could not tell whether the host clock is synchronised ({s.source}: "
                                    f"{s.detail})", fix)
    if not s.synchronised:
        return Check("clock", WARN, f"the host clock is not synchronised ({s.source}: {s.detail}); "
                                    "crash times and clock-skew reports may be wrong", fix)
    return Check("clock", OK, f"the host clock is synchronised ({s.source})")


def format_checks(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        line = f"{c.status:<4} {c.name}: {c.message}"
        if c.fix and c.status != OK:
            line += f" — fix: {c.fix}"
        lines.append(line)
    return "\n".join(lines)


def checks_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
