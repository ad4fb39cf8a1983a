"""The kernel's core_pattern pipe handler: one crash -> ``SPOOL/<id>/``.

Started by the kernel (build the string with ``collector.corepattern.core_pattern``,
whose docstring documents every specifier)::

    |/path/to/python -I -m collector.handler [-d DATA_DIR] [-s SPOOL] %P %i %I %s %t %u %g %d %F %E %e

``-d`` is the data directory (default ``/var/lib/coretriage``): the capture
policy comes from ``DATA_DIR/collector.toml`` (``collector.policy``) and the
spool is ``DATA_DIR/spool`` unless ``-s`` names another. Options come first;
after them every argument is positional, so a comm of ``-s`` is just a comm.

``main`` parses the arguments and runs ``collector.capture.capture``, the
named steps the socket server shares: open the process, decide the policy,
keep its files, stream the core, write the bundle.

Rules it keeps: small imports (stdlib and zstandard), no network, no
database; stdin is ALWAYS closed, whatever happens, as soon as the handler
is done with it, so the crashed process is never left hanging: at the end
of the core, at ``max_core_size``, once the wall-clock budget
(``max_core_seconds``, counted from the handler's start) is spent, at once
for a core it drops, and on any error (closing the pipe early ends the
kernel's dump and releases the process, ``kernel.core_pipe_limit`` or not);
reads never block past the budget, and should anything else block (a
file on a FUSE server that never answers) a watchdog alarm ends the handler,
which closes stdin too; no traceback ever reaches the kernel; every
capability is given up (``collector.privileges``) before the first byte
of the core is read; one line to syslog (``/dev/log``) on every outcome,
sent after stdin is closed; names from the crashed process are never used
in a path; secrets are masked (``analyzer.secrets``) before anything is
written; ``meta.json`` is written last and atomically.

The crash is always recorded in ``meta.json``. ``stopped_reading`` says why
the handler stopped before the end of the core and ``core_size`` how much it
read: a core cut at ``max_core_size`` or by the budget is kept when the part
read holds its notes (threads, registers, mapped files), else dropped.
Each crash keeps its full core (``core.zst``, with its stack-only core
``stack.zst`` beside it), its stack-only core alone, or neither
(``core_kind``: ``full``, ``stack``, ``none``; ``collector.stackcore``); the
reason the full core is not kept is in ``dropped``. Stack only: ``no_core``
names the executable (``no_core_kind = "none"``: neither), the core is over
``max_core_size`` (reading goes on for the stacks, within the budget), or the
rate limits say so (``rate_limit`` cores per build and container,
``host_rate_limit`` over the host, within ``rate_window`` seconds) while
``stack_rate_limit`` allows, or free space on the spool filesystem is below
``min_free_space`` (checked at the start and every 64 MiB). Neither, and the
core is never read (or reading stops): free space is below
``stack_min_free_space``, ``setuid_cores = "drop"`` and the
process is set-uid or non-dumpable (``%d`` = 2), or past
``stack_rate_limit``. Under the default ``setuid_cores =
"analyze-then-delete"``, the core of a dump-mode-2 crash is kept only until
it is analyzed (``delete_core_after_analysis``).
"""

from __future__ import annotations

import os
import sys
import time

from collector.capture import Args, capture
from collector.corestream import release
from collector.logline import log, safe


class Usage(Exception):
    pass


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


def main(argv: list[str] | None = None) -> int:
    host_time, started = time.time(), time.monotonic()
    try:
        os.umask(0o077)
        _ensure_std_fds()
        try:
            args = parse_args(sys.argv[1:] if argv is None else list(argv))
        except Usage as exc:
            release(0)
            log("LOG_ERR", f"usage: {safe(exc)}; core not read")
            return 2
        priority, line = capture(args, host_time, started, own_process=True)
        log(priority, line)
        return 0 if priority != "LOG_ERR" else 1
    except BaseException as exc:  # never a traceback to the kernel
        try:
            release(0)
        except BaseException:
            pass
        log("LOG_ERR", f"handler failed: {type(exc).__name__}: {safe(exc)}; the rest of the core not read")
        return 1


if __name__ == "__main__":
    sys.exit(main())
