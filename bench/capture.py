"""How fast is a crash captured? The pipe handler against plain ``cat``.

For each memory pattern a program touches N MiB and crashes; the time from
the crash to the moment its parent reaps it is measured with core_pattern
set to (a) coretriage's handler and (b) a two-line script ``cat > FILE``, in the
same run, alternating. The kernel holds the process until the handler has
read the core (and, with ``kernel.core_pipe_limit`` > 0, closed the pipe),
so this is what a crash costs the service.

The crash instant comes from the program itself: a SIGSEGV handler linked
into ``bigmem.c`` (``STAMP`` below) writes CLOCK_MONOTONIC to stdout and
returns, the fault repeats with the default action, and the core follows.
So the seconds spent touching the memory are never part of the figure, and
a busy machine does not turn it into noise (an earlier version subtracted a
run without a core, which the load on a shared host could outweigh).

    .venv/bin/python bench/capture.py [--mib 512] [--repeat 5] [--kinds zero,text,random] [--pipe-limit N]
        [--no-stack-cores]   (as root)

The handler writes the stack-only core (``stack.zst``) in the same pass, as
it does by default; ``--no-stack-cores`` measures it without.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample-cores"))


STAMP = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void stamp(int sig)
{
    struct timespec t;
    char line[64];
    clock_gettime(CLOCK_MONOTONIC, &t);
    int n = snprintf(line, sizeof line, "%lld.%09ld\n", (long long)t.tv_sec, t.tv_nsec);
    write(1, line, n);
    (void)sig;  /* SA_RESETHAND: returning repeats the fault, which now dumps core */
}

__attribute__((constructor)) static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stamp;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
}
"""


PIPE_LIMIT = Path("/proc/sys/kernel/core_pipe_limit")


@contextlib.contextmanager
def crash_setup(pattern: str, pipe_limit: int | None):
    """core_pattern and core_pipe_limit for one crash: both host-wide, so
    both are set and put back while the pattern lock is held."""
    from collector.corepattern import swapped

    with swapped(pattern):
        old = PIPE_LIMIT.read_text()
        if pipe_limit is not None:
            PIPE_LIMIT.write_text(f"{pipe_limit}\n")
        try:
            yield
        finally:
            PIPE_LIMIT.write_text(old)


def crash_once(exe: Path, mib: int, kind: str) -> float:
    """Seconds from the crash to the process reaped."""
    import crashkit

    proc = subprocess.Popen([str(exe), str(mib), kind], preexec_fn=crashkit.allow_cores,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stamp = proc.stdout.readline()  # the crash instant; EOF comes when the process is gone
    proc.wait()
    reaped = time.monotonic()  # CLOCK_MONOTONIC, as the stamp
    proc.stdout.close()
    if proc.returncode != -11 or not stamp:
        raise SystemExit(f"bigmem exited {proc.returncode}, not SIGSEGV after its stamp")
    return reaped - float(stamp)


def main() -> int:
    import crashkit
    from collector.corepattern import core_pattern as handler_pattern

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="zero,text,random", help="memory patterns, comma-separated")
    parser.add_argument("--no-stack-cores", action="store_true", help="stack_cores = false (default: written)")
    parser.add_argument("--pipe-limit", type=int, default=None,
                        help="kernel.core_pipe_limit for the run (put back after); default: as it is")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark sets core_pattern")
    work = Path(tempfile.mkdtemp(prefix="ct-bench-", dir="/tmp"))
    limit = PIPE_LIMIT.read_text().strip() if args.pipe_limit is None else args.pipe_limit
    try:
        (work / "stamp.c").write_text(STAMP)
        exe = crashkit.compile_c("bigmem.c", work / "bigmem", flags=("-O2", str(work / "stamp.c")))
        data = work / "d"
        data.mkdir(mode=0o700)
        # every crash is read, as cat reads it (the spool and its rate limit state go after each run anyway)
        (data / "collector.toml").write_text("rate_limit = 1000\nhost_rate_limit = 1000\n" +
                                             ("stack_cores = false\n" if args.no_stack_cores else ""))
        out = work / "cat.core"
        ours = handler_pattern(sys.executable, data_dir=str(data))
        script = work / "cat.sh"  # the kernel splits the pattern at spaces: no sh -c "..."
        script.write_text(f"#!/bin/sh\nexec cat > {out}\n")
        script.chmod(0o755)
        cat = f"|{script}"
        print(f"{args.mib} MiB of touched memory, median of {args.repeat}; seconds from the crash to reaped "
              f"(kernel.core_pipe_limit = {limit}; stack cores {'off' if args.no_stack_cores else 'on'})")
        print(f"{'memory':<8} {'coretriage':>11} {'cat':>8} {'ratio':>6} {'stored MiB':>11} {'stack KiB':>10}")
        for kind in args.kinds.split(","):
            times = {"ours": [], "cat": []}
            for _ in range(args.repeat):
                for name, pattern in (("ours", ours), ("cat", cat)):
                    with crash_setup(pattern, args.pipe_limit):
                        times[name].append(crash_once(exe, args.mib, kind))
                    if name == "ours":
                        shutil.rmtree(data / "spool", ignore_errors=True)
                        shutil.rmtree(data / "files", ignore_errors=True)
            with crash_setup(ours, args.pipe_limit):
                crash_once(exe, args.mib, kind)
            stored = sum(p.stat().st_size for p in (data / "spool").glob("*/core.zst")) / (1 << 20)
            stack = sum(p.stat().st_size for p in (data / "spool").glob("*/stack.zst")) / 1024
            shutil.rmtree(data / "spool", ignore_errors=True)
            t_ours, t_cat = statistics.median(times["ours"]), statistics.median(times["cat"])
            print(f"{kind:<8} {t_ours:>11.3f} {t_cat:>8.3f} {t_ours / t_cat:>6.2f} {stored:>11.1f} {stack:>10.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
