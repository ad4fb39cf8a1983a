"""Stack-only cores (collector/stackcore.py) against full cores: size and analysis time.

Real crashes (the kernel writes the cores): every native sample recipe, and
a process with a 2 GiB touched heap and 64 threads, each blocked a few frames
deep. For each: the full core's size, the stack core's (uncompressed and as
the handler stores it, zstd level 1) and its share of the full core, and the
median time of ``analyze_core`` + ``signature.generate`` on each (warm, in
this process), with a check that both give the same signature.

Targets: the stack core at most 1% of the full core for the big heap, and at
most 8 MiB (stored) in every case.

    .venv/bin/python bench/stackcore.py [--repeat 3] [--heap-mib 2048] [--threads 64] [--servers] [--big-only]
    (as root)
"""

from __future__ import annotations

import argparse
import mmap
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
sys.path.insert(0, str(ROOT))

BIG = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t ready;

static void __attribute__((noinline)) wait_for_work(int depth)
{
    if (depth > 0) { wait_for_work(depth - 1); return; }
    pthread_barrier_wait(&ready);
    for (;;) pause();
}

static void *worker(void *arg) { wait_for_work((int)(long)arg % 5 + 1); return NULL; }

static int __attribute__((noinline)) commit_order(char *heap, size_t n)
{
    return *(volatile int *)0 + heap[n - 1];  /* crashes here, every worker parked */
}

int main(int argc, char **argv)
{
    size_t n = (size_t)atol(argv[1]) << 20;
    int threads = atoi(argv[2]);
    char *heap = malloc(n);
    for (size_t i = 0; i < n; i++)
        heap[i] = "INSERT INTO orders VALUES (42, 'shop', 19.99);\n"[i % 47] + (char)((i >> 20) % 3);
    pthread_barrier_init(&ready, NULL, threads + 1);
    for (long t = 0; t < threads; t++) {
        pthread_t id;
        pthread_create(&id, NULL, worker, (void *)t);
    }
    pthread_barrier_wait(&ready);
    return commit_order(heap, n);
}
"""


def stack_core(core: Path, out: Path) -> None:
    """As the handler writes it while streaming: 1 MiB pieces."""
    import zstandard

    from collector.corehead import notes_end
    from collector.stackcore import StackWriter, core_reader, plan

    with open(core, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, \
            open(out, "wb") as raw:
        head = data[:8 << 20]
        writer = StackWriter(plan(head[:notes_end(head)], read=core_reader(data)), raw)
        view = memoryview(data)
        for at in range(0, len(data), 1 << 20):
            if writer.complete:
                break
            writer.feed(at, view[at:at + (1 << 20)])
        del view
    with open(out, "rb") as src, open(str(out) + ".zst", "wb") as dst:
        zstandard.ZstdCompressor(level=1).copy_stream(src, dst)


def analysis_time(core: Path, exe: Path, repeat: int) -> tuple[float, str]:
    from analyzer.analyze import analyze_core
    from analyzer.signature import generate

    times, sig = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        sig = generate(analyze_core(core, exe)).text
        times.append(time.perf_counter() - start)
    return statistics.median(times), sig


def row(name: str, core: Path, exe: Path, work: Path, repeat: int) -> None:
    stack = work / f"{name}.stack"
    stack_core(core, stack)
    full_size, stack_size = core.stat().st_size, stack.stat().st_size
    stored = Path(str(stack) + ".zst").stat().st_size
    t_full, sig_full = analysis_time(core, exe, repeat)
    t_stack, sig_stack = analysis_time(stack, exe, repeat)
    same = "yes" if sig_full == sig_stack else f"NO: {sig_stack!r} vs {sig_full!r}"
    print(f"{name:<15} {full_size / (1 << 20):>10.1f} {stack_size / 1024:>10.0f} {stored / 1024:>10.0f} "
          f"{100 * stack_size / full_size:>7.2f}% {t_full:>8.2f} {t_stack:>8.2f} {same:>6}", flush=True)
    stack.unlink()


def main() -> int:
    import crashkit
    from recipes import native

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heap-mib", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--big-only", action="store_true", help="only the big heap with many threads")
    parser.add_argument("--servers", action="store_true", help="also HAProxy and PostgreSQL (sample-cores recipes)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the kernel writes the cores (core_pattern)")
    work = Path(tempfile.mkdtemp(prefix="ct-bench-stack-", dir="/tmp"))
    try:
        print(f"stack-only core vs full core; analysis: median of {args.repeat}, seconds, warm")
        print(f"{'crash':<15} {'full MiB':>10} {'stack KiB':>10} {'stored KiB':>10} {'share':>8} "
              f"{'t full':>8} {'t stack':>8} {'same sig':>6}")
        for name, recipe in native.RECIPES.items() if not args.big_only else ():
            sample = recipe(work, 0)
            row(name, sample.core, sample.exe, work, args.repeat)
            sample.core.unlink()
        if args.servers:
            from recipes import haproxy, postgres

            for recipe in (haproxy, postgres):
                place = work / recipe.__name__.rsplit(".", 1)[-1]
                place.mkdir(mode=0o755)  # the servers drop privileges
                sample = recipe.make(place)
                row(sample.name, sample.core, sample.exe, work, args.repeat)
        src = work / "big.c"
        src.write_text(BIG)
        exe = work / "big"
        subprocess.run(["gcc", "-g", "-O1", "-fno-omit-frame-pointer", "-pthread", "-o", str(exe), str(src)],
                       check=True, capture_output=True)
        core = crashkit.crash([str(exe), str(args.heap_mib), str(args.threads)], work / "cores", timeout=600)
        row(f"heap{args.heap_mib}M+{args.threads}t", core, exe, work, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
