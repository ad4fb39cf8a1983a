"""Regenerate the committed sample bundles (run as root): small static
programs, so a bundle needs nothing from the host to be symbolized: musl
ones crashed by the kernel, and aarch64 ones (glibc, Debian's cross
compiler) crashed under qemu-aarch64, whose executables are kept
zstd-compressed (``exe`` ends in ``.zst``). Reading the aarch64 ones needs
gdb-multiarch, not the cross toolchain.

    .venv/bin/python sample-cores/make_bundles.py [NAME ...]   (all by default)
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
    "musl-recursion": ("recursion.c", ["0"], "walk_tree"),
}


CROSS_BUNDLES = {
    # name: (architecture, source, argv tail, signal, expected signature)
    "aarch64-strlen": ("aarch64", "segv.c", ["GET /"], signal.SIGSEGV,
                       "strlen | header_length | parse_request | main"),
    "aarch64-assert": ("aarch64", "assert.c", ["queue", "2"], signal.SIGABRT,
                       "check_queue | main | assert(depth < 16)"),
}


def _compress(src_path: Path, dst_path: Path) -> None:
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        zstandard.ZstdCompressor(level=19).copy_stream(src, dst)


def _write(name: str, meta: dict) -> None:
    out = HERE / "bundles" / name
    (out / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(name, (out / "core.zst").stat().st_size, "bytes compressed")


def main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, args, expected) in BUNDLES.items():
            if names and name not in names:
                continue
            exe = crashkit.compile_c(source, Path(tmp) / name, cc="musl-gcc", flags=("-static",))
            core = crashkit.crash([str(exe), *args], Path(tmp) / "cores", expect_signal=signal.SIGSEGV)
            out = HERE / "bundles" / name
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(exe, out / name)
            _compress(core, out / "core.zst")
            _write(name, {"exe": name, "expected_signature": expected, "crashed_at": core.stat().st_mtime})
        for name, (arch, source, args, sig, expected) in CROSS_BUNDLES.items():
            if names and name not in names:
                continue
            crashkit.need(crashkit.CROSS_CC[arch])
            exe = crashkit.compile_c(source, Path(tmp) / name, cc=crashkit.CROSS_CC[arch], flags=("-static",))
            core = crashkit.qemu_crash(arch, [str(exe), *args], Path(tmp) / "cores", expect_signal=sig)
            out = HERE / "bundles" / name
            out.mkdir(parents=True, exist_ok=True)
            _compress(exe, out / f"{name}.zst")
            _compress(core, out / "core.zst")
            _write(name, {"exe": f"{name}.zst", "architecture": arch, "expected_signature": expected,
                          "crashed_at": core.stat().st_mtime})


if __name__ == "__main__":
    main(sys.argv[1:])
