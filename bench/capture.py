"""How fast is a crash captured? The pipe handler against plain ``cat``.

For each memory pattern a program touches N MiB and crashes; the time from
its start to the moment its parent reaps it is measured with core_pattern
set to (a) coretriage's handler and (b) a two-line script ``cat > FILE``, in the
same run, alternating. The kernel holds the process until the handler has
read the whole core, so this is what a crash costs the service.

    .venv/bin/python bench/capture.py [--mib 512] [--repeat 3]   (as root)
"""

from __future__ import annotations

import argparse
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


def crash_once(exe: Path, mib: int, kind: str) -> float:
    import crashkit

    start = time.perf_counter()
    proc = subprocess.run([str(exe), str(mib), kind], preexec_fn=crashkit.allow_cores,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != -11:
        raise SystemExit(f"bigmem exited {proc.returncode}, not SIGSEGV")
    return elapsed


def touch_only(exe: Path, mib: int, kind: str) -> float:
    """The same run with no core at all (RLIMIT_CORE 0, file pattern): the
    program's own work, subtracted from both."""
    start = time.perf_counter()
    subprocess.run(["sh", "-c", f"ulimit -c 0; exec {exe} {mib} {kind}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    import crashkit
    from collector.corepattern import core_pattern as handler_pattern, swapped

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark sets core_pattern")
    work = Path(tempfile.mkdtemp(prefix="ct-bench-", dir="/tmp"))
    try:
        exe = crashkit.compile_c("bigmem.c", work / "bigmem", flags=("-O2",))
        data = work / "d"
        out = work / "cat.core"
        ours = handler_pattern(sys.executable, data_dir=str(data))
        script = work / "cat.sh"  # the kernel splits the pattern at spaces: no sh -c "..."
        script.write_text(f"#!/bin/sh\nexec cat > {out}\n")
        script.chmod(0o755)
        cat = f"|{script}"
        print(f"{args.mib} MiB of touched memory, median of {args.repeat}; seconds from start to reaped, "
              "minus the same run without a core")
        print(f"{'memory':<8} {'coretriage':>11} {'cat':>8} {'ratio':>6} {'stored MiB':>11}")
        for kind in ("zero", "text", "random"):
            base = statistics.median(touch_only(exe, args.mib, kind) for _ in range(args.repeat))
            times = {"ours": [], "cat": []}
            for _ in range(args.repeat):
                for name, pattern in (("ours", ours), ("cat", cat)):
                    with swapped(pattern):
                        times[name].append(crash_once(exe, args.mib, kind) - base)
                    if name == "ours":
                        shutil.rmtree(data / "spool", ignore_errors=True)
                        shutil.rmtree(data / "files", ignore_errors=True)
            with swapped(ours):
                crash_once(exe, args.mib, kind)
            stored = sum(p.stat().st_size for p in (data / "spool").glob("*/core.zst")) / (1 << 20)
            shutil.rmtree(data / "spool", ignore_errors=True)
            t_ours, t_cat = statistics.median(times["ours"]), statistics.median(times["cat"])
            print(f"{kind:<8} {t_ours:>11.3f} {t_cat:>8.3f} {t_ours / t_cat:>6.2f} {stored:>11.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
