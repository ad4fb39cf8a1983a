"""``coretriage demo`` (what ``make run`` does today): analyze the committed
sample bundles and, as root, crash the sample-core recipes for real."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "sample-cores"


def _ingest_bundles(config, store) -> None:
    from coretriage.ingest import decompressed, ingest

    for meta_file in sorted((SAMPLES / "bundles").glob("*/bundle.json")):
        bundle = meta_file.parent
        meta = json.loads(meta_file.read_text())
        with decompressed(bundle / "core.zst", config.tmp_dir) as core:
            done = ingest(config, store, core, bundle / meta["exe"], crashed_at=meta.get("crashed_at"),
                          meta={"source": f"sample bundle {bundle.name}"})
        print(f"bundle {bundle.name:<16} -> {done.crash.group_ref:<5} {done.signature.text}")


def _crash_recipes(config, store) -> None:
    from coretriage.ingest import ingest

    sys.path.insert(0, str(SAMPLES))
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
    _ingest_bundles(config, store)
    if os.geteuid() == 0:
        _crash_recipes(config, store)
    else:
        print("not root: the recipes that crash real programs need core_pattern; showing bundles only")
