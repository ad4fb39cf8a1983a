"""A Python crash's analysis (gdb and PyStack) against the native-only
analysis (gdb alone) of the same core.

Real crashes of Debian's python3 (the kernel writes the cores): the ctypes
sample, and a service-like process whose crashing thread runs beside
``--threads`` threads each parked ``--depth`` Python frames deep. For each:
the median time of ``analyze_core`` + ``signature.generate`` with the
Python stacks and without (``options={"python_stacks": False}``), measured
alternately in this run, and their ratio; and, for information, with the
Python stacks and their locals (``python_locals``, off by default).

Target: at most 1.5 times the native-only analysis (the default, without locals).

    .venv/bin/python bench/python.py [--repeat 5] [--threads 16] [--depth 30]   (as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample-cores"))
sys.path.insert(0, str(ROOT))

TARGET = 1.5

SERVICE = """\
import ctypes
import sys
import threading


def park(depth, ready, stop):
    if depth:
        return park(depth - 1, ready, stop)
    ready.release()
    stop.wait()


def handle(record):
    return ctypes.string_at(record)


threads, depth = int(sys.argv[1]), int(sys.argv[2])
ready, stop = threading.Semaphore(0), threading.Event()
for n in range(threads):
    threading.Thread(target=park, args=(depth, ready, stop), name=f"worker-{n}").start()
for n in range(threads):
    ready.acquire()
handle(0)
"""


def timed(core: Path, exe: Path, python: bool, with_locals: bool = False) -> tuple[float, str, bool]:
    from analyzer.analyze import analyze_core
    from analyzer.signature import generate

    start = time.perf_counter()
    analysis = analyze_core(core, exe, options={"python_stacks": python, "python_locals": with_locals})
    text = generate(analysis).text
    return time.perf_counter() - start, text, analysis.python is not None


def row(name: str, core: Path, exe: Path, repeat: int) -> float:
    timed(core, exe, True)  # warm: page cache, imports
    with_py, without, with_locals = [], [], []
    sigs = set()
    for _ in range(repeat):  # alternate, so drift hits all alike
        t, sig, read = timed(core, exe, True)
        assert read, "PyStack read nothing"
        with_py.append(t)
        sigs.add(sig)
        t, _, _ = timed(core, exe, False)
        without.append(t)
        t, _, _ = timed(core, exe, True, with_locals=True)
        with_locals.append(t)
    a, b, c = statistics.median(with_py), statistics.median(without), statistics.median(with_locals)
    print(f"{name:<22} {b:>9.3f} {a:>9.3f} {a / b:>7.2f}x {c:>9.3f} {c / b:>7.2f}x  {sigs.pop()}", flush=True)
    return a / b


def main() -> int:
    import crashkit
    from recipes import python as recipes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--depth", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the kernel writes the cores (core_pattern)")
    work = Path(tempfile.mkdtemp(prefix="ct-bench-python-", dir="/tmp"))
    try:
        print(f"Python crash analysis with PyStack vs native only; median of {args.repeat}, seconds")
        print(f"{'crash':<22} {'native':>9} {'python':>9} {'ratio':>8} {'+locals':>9} {'ratio':>8}  signature")
        ratios = []
        sample = recipes.python_ctypes(work)
        ratios.append(row("python_ctypes", sample.core, sample.exe, args.repeat))
        script = work / "service.py"
        script.write_text(SERVICE)
        core = crashkit.crash([recipes.PYTHON, str(script), str(args.threads), str(args.depth)], work / "cores",
                              env={}, timeout=120)
        ratios.append(row(f"service {args.threads}t x {args.depth}", core, Path(recipes.PYTHON), args.repeat))
        worst = max(ratios)
        print(f"worst ratio {worst:.2f}x (target <= {TARGET}x): {'OK' if worst <= TARGET else 'OVER'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
