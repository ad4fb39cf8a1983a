"""How long does coretriage's full analysis take, next to a bare gdb backtrace?

Run by ``make bench`` (as root: the kernel writes the cores, which needs
core_pattern). The sample-core recipes crash real programs into a temporary
directory; then, per core, the median wall time of N runs of:

- warm:  ``analyze_core`` + ``signature.generate`` in this process, imports
         already paid: what a long-lived worker (Celery) pays per core;
- cold:  the same in a fresh ``python -c``, interpreter start and imports
         included, the fair match for gdb, which starts from nothing too;
- gdb:   ``gdb -batch -nx -iex 'set auto-load off' -ex 'thread apply all bt'``;
- eu-stack ``--core=CORE -e EXE`` (which stops at 256 frames per thread).

The cold child also reports peak memory: its own and that of the gdb it
drives. The target is "full analysis <= 1.5x gdb's bare backtrace", warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "analysis-latest.json"
NATIVE = ("segv", "double_free", "thread", "cxx_exception", "musl", "stripped", "recursion")
SLOW = {"recursion"}  # the ~87,000-frame stack overflow; --quick leaves it out
TARGET = 1.5  # warm analysis / bare gdb backtrace
EU_STACK_LIMIT = 256  # eu-stack's default frame limit per thread
LABELS = {"warm": "coretriage warm", "cold": "coretriage cold", "gdb": "gdb bt", "eu": "eu-stack"}

# The cold run. Peak memory comes from VmHWM in /proc, not ru_maxrss: a
# process started with vfork+exec (how Python's subprocess spawns) inherits
# its spawner's ru_maxrss, so ru_maxrss would charge this bench's own RSS to
# the child, and the child's RSS to gdb. VmHWM belongs to one address space.
# gdb's is read, inside the analysis sandbox, just before gdb is closed
# (prlimit execs gdb, so the pid is gdb's); the sandbox reports it.
COLD_SCRIPT = r"""
import json, sys, time
start = time.perf_counter()
from analyzer.analyze import analyze_core
from analyzer.gdb import GdbBudget
from analyzer.sandbox import analysis_sandbox
from analyzer.signature import generate

def hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))

core, exe, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
imported = time.perf_counter()
budget = GdbBudget(timeout=timeout)
box = analysis_sandbox(budget)
analysis = analyze_core(core, exe, budget=budget, gdb=box)
signature = generate(analysis)
done = time.perf_counter()
gdb_hwm = box.facts.get("gdb", {}).get("VmHWM")  # read by the sandbox just before gdb was closed
print(json.dumps({"import_s": imported - start, "analysis_s": done - imported,
                  "python_kb": hwm("self"), "gdb_kb": int(gdb_hwm.split()[0]) if gdb_hwm else None,
                  "problem_codes": [getattr(p, "code", None) for p in analysis.problems]}))
"""


@dataclass(frozen=True)
class Timing:
    runs: tuple[float, ...]  # seconds, in run order
    timed_out: bool = False  # a run hit the timeout; the rest were not tried

    @property
    def median(self) -> float | None:
        return None if self.timed_out or not self.runs else statistics.median(self.runs)


@dataclass(frozen=True)
class CoreResult:
    name: str
    core_mb: float
    threads: int
    frames: int  # in the crashing thread, all of them (not just those kept)
    signature: str
    problems: tuple[str, ...]  # coretriage's own, from the analysis
    notes: tuple[str, ...]  # baselines that exited non-zero, and why
    warm: Timing
    cold: Timing
    gdb_bt: Timing
    eu_stack: Timing
    cold_import_s: float | None  # of the cold time: interpreter start to imports done
    python_peak_mb: float | None  # coretriage's Python process
    gdb_peak_mb: float | None  # the gdb coretriage drives
    bare_gdb_peak_mb: float | None  # gdb -batch ... thread apply all bt

    def ratio(self, timing: Timing) -> float | None:
        if timing.median is None or self.gdb_bt.median is None:
            return None
        return timing.median / self.gdb_bt.median


def run_timed(argv: list[str], timeout: float, **kw) -> tuple[float | None, str, str]:
    """Wall time of one command (None on timeout), its stdout and, when it
    failed, why. Its own session, so a timeout kills everything it started
    (coretriage's gdb)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace", **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, "", ""
    seconds = time.perf_counter() - start
    lines = err.strip().splitlines()
    failure = f"exited {proc.returncode}: {lines[-1] if lines else ''}" if proc.returncode else ""
    return seconds, out or "", failure


def gdb_bt(sample, extra: tuple[str, ...] = ()) -> list[str]:
    return ["gdb", "-batch", "-nx", "-iex", "set auto-load off", "-ex", "thread apply all bt",
            *extra, str(sample.exe), str(sample.core)]


def bare_gdb_peak_mb(sample, timeout: float, tmp: Path) -> float | None:
    """One extra, untimed gdb run that ends by printing its own VmHWM: the
    shell it starts is its child, so $PPID is gdb."""
    out = tmp / f"{sample.name}.hwm"
    shell = ("-ex", f"shell grep VmHWM /proc/$PPID/status > {out}")
    seconds, _, _ = run_timed(gdb_bt(sample, shell), timeout, stdout=subprocess.DEVNULL)
    if seconds is None or not out.exists():
        return None
    return int(out.read_text().split()[1]) / 1024


def measure(sample, repeat: int, timeout: float, tmp: Path) -> CoreResult:
    from analyzer.analyze import analyze_core
    from analyzer.gdb import GdbBudget
    from analyzer.signature import generate
    from analyzer.problems import GDB_TIMEOUT

    budget = GdbBudget(timeout=timeout)
    runs: dict[str, list[float]] = {k: [] for k in ("warm", "cold", "gdb", "eu")}
    timed_out: set[str] = set()
    child: dict = {}
    failures: dict[str, str] = {}  # a baseline that exited non-zero (still timed)
    analysis = None
    # Interleaved, so page cache and CPU frequency drift hit every tool alike.
    for _ in range(repeat):
        if "warm" not in timed_out:
            start = time.perf_counter()
            analysis = analyze_core(sample.core, sample.exe, budget=budget)
            signature = generate(analysis)
            runs["warm"].append(time.perf_counter() - start)
            if any(getattr(p, "code", None) == GDB_TIMEOUT for p in analysis.problems):
                timed_out.add("warm")
        commands = {
            "cold": [sys.executable, "-c", COLD_SCRIPT, str(sample.core), str(sample.exe), str(timeout)],
            "gdb": gdb_bt(sample),
            "eu": ["eu-stack", f"--core={sample.core}", "-e", str(sample.exe)],
        }
        for key, argv in commands.items():
            if key in timed_out:
                continue
            # the cold child enforces the timeout on gdb itself; allow for its start-up
            seconds, out, failure = run_timed(argv, timeout + 30 if key == "cold" else timeout, cwd=ROOT,
                                              stdout=subprocess.PIPE if key == "cold" else subprocess.DEVNULL)
            if seconds is None:
                timed_out.add(key)
                continue
            runs[key].append(seconds)
            if failure:
                failures[key] = failure
            if key == "cold" and not failure:
                child = json.loads(out.strip().splitlines()[-1])
                if GDB_TIMEOUT in child["problem_codes"]:
                    timed_out.add(key)

    crashed = analysis.threads[0] if analysis and analysis.threads else None
    timing = {k: Timing(tuple(v), k in timed_out) for k, v in runs.items()}
    return CoreResult(
        name=sample.name, core_mb=sample.core.stat().st_size / 2**20,
        threads=len(analysis.threads) if analysis else 0,
        frames=(crashed.depth or len(crashed.frames)) if crashed else 0,
        signature=signature.text if analysis else "",
        problems=tuple(analysis.problems) if analysis else (),
        notes=tuple(f"{LABELS[k]} {v}" for k, v in failures.items()),
        warm=timing["warm"], cold=timing["cold"], gdb_bt=timing["gdb"], eu_stack=timing["eu"],
        cold_import_s=child.get("import_s"),
        python_peak_mb=child["python_kb"] / 1024 if child.get("python_kb") else None,
        gdb_peak_mb=child["gdb_kb"] / 1024 if child.get("gdb_kb") else None,
        bare_gdb_peak_mb=bare_gdb_peak_mb(sample, timeout, tmp))


def make_samples(workdir: Path, names: tuple[str, ...], with_haproxy: bool) -> list:
    sys.path.insert(0, str(ROOT / "sample-cores"))
    from recipes import native

    samples = []
    for name in names:
        print(f"crashing {name} ...", flush=True)
        samples.append(native.RECIPES[name](workdir))
    if with_haproxy and Path("/usr/sbin/haproxy").exists():
        print("crashing haproxy ...", flush=True)
        try:
            from recipes import haproxy

            samples.append(haproxy.make(workdir / "haproxy"))
        except Exception as exc:  # optional: the native cores still make a benchmark
            print(f"note: no haproxy core: {' '.join(str(exc).split())[:200]}")
    return samples


def fmt(value: float | None, spec: str = ".3f", timed_out: bool = False) -> str:
    if timed_out:
        return "timeout"
    return "-" if value is None else format(value, spec)


def report(results: list[CoreResult], repeat: int) -> None:
    head = ("core", "frames", "warm s", "cold s", "gdb bt s", "eu-stack s", "warm/gdb", "cold/gdb",
            "py MB", "gdb(ct) MB", "gdb(bare) MB")
    rows = [head]
    for r in results:
        rows.append((r.name, str(r.frames),
                     fmt(r.warm.median, timed_out=r.warm.timed_out),
                     fmt(r.cold.median, timed_out=r.cold.timed_out),
                     fmt(r.gdb_bt.median, timed_out=r.gdb_bt.timed_out),
                     fmt(r.eu_stack.median, timed_out=r.eu_stack.timed_out),
                     fmt(r.ratio(r.warm), ".2f"), fmt(r.ratio(r.cold), ".2f"),
                     fmt(r.python_peak_mb, ".0f"), fmt(r.gdb_peak_mb, ".0f"), fmt(r.bare_gdb_peak_mb, ".0f")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(f"\nmedian of {repeat} runs. warm: in-process, imports paid (a long-lived worker); "
          "cold: fresh python -c, start-up included.")
    print(f"eu-stack stops at {EU_STACK_LIMIT} frames per thread by default, so on deep stacks it "
          "does less work than gdb and coretriage.")
    print("peak RSS is VmHWM: py = coretriage's Python process, gdb(ct) = the gdb it drives, "
          "gdb(bare) = the gdb bt baseline.\n")
    for r in results:
        ratio = r.ratio(r.warm)
        if ratio is None:
            verdict = "no verdict (a run timed out)"
        else:
            verdict = (f"{'meets' if ratio <= TARGET else 'MISSES'} target: full analysis "
                       f"{r.warm.median:.3f} s = {ratio:.2f}x gdb bt {r.gdb_bt.median:.3f} s (<= {TARGET}x)")
        print(f"{r.name}: {verdict}")
        for problem in r.problems:
            print(f"  coretriage problem: {problem}")
        for note in r.notes:
            print(f"  {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, help="runs per tool and core (default 5, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="skip the deep recursion core, 3 runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run before 'timeout'")
    parser.add_argument("--no-haproxy", action="store_true", help="skip the optional HAProxy core")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be at least 1")

    if os.geteuid() != 0:
        sys.exit("bench/analysis.py must run as root: the sample cores are written by the kernel "
                 "through /proc/sys/kernel/core_pattern (sudo make bench)")
    missing = [t for t in ("gdb", "eu-stack") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)} (make bench installs them)")

    # Imports and rule files loaded before any timing: "warm" means warm.
    from analyzer.signature import load_rules
    load_rules()

    names = tuple(n for n in NATIVE if not (args.quick and n in SLOW))
    with tempfile.TemporaryDirectory(prefix="coretriage-bench-") as tmp:
        samples = make_samples(Path(tmp), names, not args.no_haproxy)
        results = []
        for sample in samples:
            print(f"measuring {sample.name} ({repeat} runs) ...", flush=True)
            results.append(measure(sample, repeat, args.timeout, Path(tmp)))

    report(results, repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "repeat": repeat, "timeout_s": args.timeout,
            "target_warm_over_gdb": TARGET, "python": platform.python_version(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "gdb": subprocess.run(["gdb", "--version"], capture_output=True,
                                                          text=True).stdout.splitlines()[0],
            "eu_stack_frame_limit": EU_STACK_LIMIT}
    rows = [{**asdict(r), **{f"{k}_median_s": getattr(r, k).median for k in ("warm", "cold", "gdb_bt", "eu_stack")},
             "ratio_warm_gdb": r.ratio(r.warm), "ratio_cold_gdb": r.ratio(r.cold)} for r in results]
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
