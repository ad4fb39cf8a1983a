"""Regenerate the committed sample bundles (run as root): small static musl
programs, so a bundle needs nothing from the host to be symbolized.

    .venv/bin/python sample-cores/make_bundles.py
"""

import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import crashkit  # noqa: E402

BUNDLES = {
    # name: (source, argv tail, expected signature)
    "musl-memcpy": ("musl.c", ["payload"], "memcpy | compress_block | main"),
    "musl-recursion": ("recursion.c", ["0"], "walk_tree | main"),
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, args, expected) in BUNDLES.items():
            exe = crashkit.compile_c(source, Path(tmp) / name, cc="musl-gcc", flags=("-static",))
            core = crashkit.crash([str(exe), *args], Path(tmp) / "cores", expect_signal=signal.SIGSEGV)
            out = HERE / "bundles" / name
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(exe, out / name)
            with open(core, "rb") as src, open(out / "core.zst", "wb") as dst:
                zstandard.ZstdCompressor(level=19).copy_stream(src, dst)
            (out / "bundle.json").write_text(json.dumps(
                {"exe": name, "expected_signature": expected, "crashed_at": core.stat().st_mtime}, indent=2) + "\n")
            print(name, (out / "core.zst").stat().st_size, "bytes compressed")


if __name__ == "__main__":
    main()
