"""How fast does the ``coretriage`` command start and finish, next to the
baselines an on-call engineer would otherwise run?

Run by ``make bench`` (as root: the kernel writes the sample cores). For
each small sample core, interleaved so that machine noise hits every tool
alike, the median wall time of N runs of:

- ``coretriage ingest CORE --exe EXE`` in a fresh process, into a copy of a
  data dir whose database is already made (so each run stores a new crash);
- ``gdb -batch -nx -iex 'set auto-load off' -ex 'thread apply all bt'``.

The command runs as installed: with its modules' bytecode, which pip
writes when it installs the package. A checkout's (``pip install -e``) is
byte-compiled first, since under PYTHONDONTWRITEBYTECODE=1 every run would
otherwise compile every module of ours again (a third of a cold ingest);
``--as-is`` measures without that.

Also ``coretriage list`` on a database holding those groups against
``python3 -I -c pass`` (the floor of any Python command), and the deep
stack-overflow core through ``coretriage ingest`` once each with an 8 MiB
and a 64 MiB stack (~87,000 and ~700,000 frames of the same bug), with the
peak resident size of the biggest process under it (gdb).

Targets (issues 7 and 11): ingest / gdb bt <= 1.5 over all small cores;
list <= 8x python's start-up; the stack overflow <= 5 s at either size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "cli-latest.json"
SMALL = ("segv", "double_free", "thread", "cxx_exception", "musl", "stripped")
COMMAND = Path(sys.executable).parent / "coretriage"
TARGETS = {"ingest_over_gdb": 1.5, "list_over_python": 8.0, "overflow_s": 5.0}


def timed(argv: list, **kw) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=600, **kw)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def timed_peak(argv: list) -> tuple[float, int]:
    """(seconds, peak RSS in KiB of the biggest process it ran): measured by
    a wrapper of its own, so no earlier child's peak counts."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    done = subprocess.run([sys.executable, "-I", "-c", probe, *map(str, argv)], capture_output=True, text=True,
                          timeout=600)
    seconds, peak, rc = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({rc}): {done.stderr[-500:]}")
    return float(seconds), int(peak)


def overflow_core(exe: Path, stack_mib: int, cores: Path) -> Path:
    """The recursion recipe's program crashed with a stack of ``stack_mib``."""
    import resource
    import signal

    import crashkit

    def limits():
        crashkit.allow_cores()
        resource.setrlimit(resource.RLIMIT_STACK, (stack_mib << 20, stack_mib << 20))

    with crashkit.cores_into(cores):
        proc = subprocess.Popen([str(exe)], preexec_fn=limits, stdout=subprocess.DEVNULL)
        if proc.wait(timeout=120) != -signal.SIGSEGV:
            raise SystemExit(f"{exe} with a {stack_mib} MiB stack did not die of SIGSEGV")
        return crashkit.wait_for_core(cores, proc.pid)


def gdb_bt(sample) -> list:
    return ["gdb", "-batch", "-nx", "-iex", "set auto-load off", "-ex", "thread apply all bt", sample.exe,
            sample.core]


def make_samples(workdir: Path, names) -> dict:
    sys.path.insert(0, str(ROOT / "sample-cores"))
    from recipes import native

    return {name: native.RECIPES[name](workdir) for name in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-overflow", action="store_true", help="skip the deep recursion core")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--as-is", action="store_true", help="do not byte-compile the checkout's modules first")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/cli.py must run as root: the kernel writes the sample cores (sudo make bench)")
    if not COMMAND.exists():
        sys.exit(f"{COMMAND} is missing (make bench installs it)")

    if not args.as_is:
        import compileall

        for package in ("analyzer", "coretriage", "collector"):
            compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="coretriage-bench-cli-") as tmp:
        tmp = Path(tmp)
        names = SMALL + (() if args.no_overflow else ("recursion",))
        samples = make_samples(tmp / "samples", names)
        template = tmp / "template"
        subprocess.run([COMMAND, "--data-dir", template, "list"], check=True, stdout=subprocess.DEVNULL)

        ingest: dict[str, list[float]] = {n: [] for n in SMALL}
        gdb: dict[str, list[float]] = {n: [] for n in SMALL}
        for run in range(args.repeat):
            for name in SMALL:
                s = samples[name]
                data = tmp / f"run-{run}-{name}"
                shutil.copytree(template, data)  # an empty, made database: this crash is new
                ingest[name].append(timed([COMMAND, "--data-dir", data, "ingest", s.core, "--exe", s.exe]))
                gdb[name].append(timed(gdb_bt(s)))
                if name != SMALL[-1] or run != args.repeat - 1:
                    shutil.rmtree(data)
        listing = tmp / f"run-{args.repeat - 1}-{SMALL[-1]}"
        for name in SMALL[:-1]:  # every group in one database for `list`
            subprocess.run([COMMAND, "--data-dir", listing, "ingest", samples[name].core, "--exe",
                            samples[name].exe], check=True, stdout=subprocess.DEVNULL)
        listed, python = [], []
        for _ in range(args.repeat * 2):
            listed.append(timed([COMMAND, "--data-dir", listing, "list"]))
            python.append(timed([sys.executable, "-I", "-c", "pass"]))
        overflow: dict[int, tuple[float, int]] = {}
        if not args.no_overflow:
            s = samples["recursion"]
            for mib in (8, 64):
                core = overflow_core(s.exe, mib, tmp / f"overflow-cores-{mib}")
                data = tmp / f"overflow-{mib}"
                shutil.copytree(template, data)
                overflow[mib] = timed_peak([COMMAND, "--data-dir", data, "ingest", core, "--exe", s.exe])

    med = {n: (statistics.median(ingest[n]), statistics.median(gdb[n])) for n in SMALL}
    total_ingest, total_gdb = sum(i for i, _ in med.values()), sum(g for _, g in med.values())
    ratios = {"ingest_over_gdb": total_ingest / total_gdb,
              "list_over_python": statistics.median(listed) / statistics.median(python)}
    print(f"\n{'core':<14} {'ingest s':>9} {'gdb bt s':>9} {'ratio':>6}")
    for name, (i, g) in med.items():
        print(f"{name:<14} {i:>9.3f} {g:>9.3f} {i / g:>6.2f}")
    print(f"{'all small':<14} {total_ingest:>9.3f} {total_gdb:>9.3f} {ratios['ingest_over_gdb']:>6.2f}"
          f"   target <= {TARGETS['ingest_over_gdb']}")
    print(f"\ncoretriage list {statistics.median(listed):.3f} s, python3 -I -c pass "
          f"{statistics.median(python):.3f} s: {ratios['list_over_python']:.1f}x   target <= "
          f"{TARGETS['list_over_python']}x")
    for mib, (seconds, peak) in overflow.items():
        print(f"stack overflow, {mib} MiB stack: coretriage ingest {seconds:.2f} s, biggest process "
              f"{peak / 1024:.0f} MiB   target <= {TARGETS['overflow_s']} s")
    print(f"\nmedian of {args.repeat} runs (list: {args.repeat * 2}), interleaved; cold processes.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "repeat": args.repeat, "targets": TARGETS,
        "per_core": {n: {"ingest_s": i, "gdb_bt_s": g} for n, (i, g) in med.items()},
        "ratios": ratios, "list_s": statistics.median(listed), "python_s": statistics.median(python),
        "byte_compiled": not args.as_is,
        "overflow_s": max((t for t, _ in overflow.values()), default=None),
        "overflow": {f"{mib}MiB": {"s": t, "peak_rss_kib": k} for mib, (t, k) in overflow.items()}},
        indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
