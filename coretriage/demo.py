"""``coretriage demo`` (and the start of ``make run``): analyze the committed
sample bundles and, as root, crash the sample-core recipes for real.

The samples are C sources, recipes that build and crash them, and two small
bundles: a checkout's ``sample-cores/``, not part of the installed package.
An installed coretriage finds them through ``CORETRIAGE_SAMPLES`` or says in
one line that there are none."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

CHECKOUT_SAMPLES = Path(__file__).resolve().parents[1] / "sample-cores"


def samples_dir() -> Path | None:
    env = os.environ.get("CORETRIAGE_SAMPLES")
    found = Path(env) if env else CHECKOUT_SAMPLES
    return found if (found / "recipes").is_dir() else None


def _ingest_bundles(config, store, samples: Path) -> None:
    from coretriage.ingest import decompressed, ingest

    for meta_file in sorted((samples / "bundles").glob("*/bundle.json")):
        bundle = meta_file.parent
        meta = json.loads(meta_file.read_text())
        with contextlib.ExitStack() as stack:
            core = stack.enter_context(decompressed(bundle / "core.zst", config.tmp_dir))
            exe = bundle / meta["exe"]
            if exe.suffix == ".zst":  # the aarch64 bundles keep their (static) programs compressed
                exe = stack.enter_context(decompressed(exe, config.tmp_dir))
            done = ingest(config, store, core, exe, crashed_at=meta.get("crashed_at"),
                          meta={"source": f"sample bundle {bundle.name}"})
        print(f"bundle {bundle.name:<16} -> {done.crash.group_ref:<5} {done.signature.text}")


def _crash_recipes(config, store, samples: Path) -> None:
    from coretriage.ingest import ingest

    sys.path.insert(0, str(samples))
    from recipes import haproxy, native, postgres  # sample-cores/ is not a package

    # native recipes share one build directory; each server gets its own
    makers = {name: (lambda tmp, f=f: f(tmp)) for name, f in native.RECIPES.items()}
    makers.update(haproxy=lambda tmp: haproxy.make(tmp / "haproxy"),
                  postgres=lambda tmp: postgres.make(tmp / "postgres"))
    with tempfile.TemporaryDirectory(prefix="coretriage-demo-") as tmp:
        for name, make in makers.items():
            try:
                sample = make(Path(tmp))
                done = ingest(config, store, sample.core, sample.exe, meta={"source": f"recipe {name}"})
                print(f"recipe {name:<16} -> {done.crash.group_ref:<5} {done.signature.text}")
            except Exception as exc:  # one broken recipe must not stop the demo
                print(f"recipe {name:<16} -> skipped: {str(exc).splitlines()[0] if str(exc) else exc!r}")


def run_demo(config, store) -> None:
    samples = samples_dir()
    if samples is None:
        print("no sample cores: they come with a checkout (sample-cores/), not with the package; "
              "set CORETRIAGE_SAMPLES=DIR to use them")
        return
    _ingest_bundles(config, store, samples)
    if os.geteuid() == 0:
        _crash_recipes(config, store, samples)
    else:
        print("not root: the recipes that crash real programs need core_pattern; showing bundles only")
