"""Build-id forgery: a tenant plants a library that claims another build's id.

A build-id is bytes any linker writes on request (``-Wl,--build-id=0x...``).
The attacker runs in a root of its own (``unshare -m`` + chroot, what a
container is to the kernel) whose ``libc.so.6`` is a library we compile here
that carries the host libc's build-id and says it is "glibc 9.99". It
crashes first, then a victim on the host crashes through the real libc. Both
go through the real kernel, the real pipe handler and the real analysis:
each analysis must use its own process's files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import crashkit
from analyzer.elfid import build_id, fd_reader
from collector.spool import finished_bundles, read_meta
from analyzer.model import Analysis
from coretriage.config import load_config
from coretriage.ingest import reprocess
from coretriage.pipeline import process_bundle
from coretriage.store import Store
from handlerkit import bundle_of

HOST_LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6").resolve()  # as the host maps it (merged /usr)
LOADER = Path("/lib64/ld-linux-x86-64.so.2")

FAKE_LIBC = r"""
__attribute__((used)) const char banner[] = "GNU C Library (Fake) stable release version 9.99.\n";
int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv)
{
    main(argc, argv, 0);
    for (;;) *(volatile int *)0 = 0;
}
void __libc_early_init(_Bool initial) { (void)initial; }
"""
# the symbol versions the host's loader and a program linked on this host ask libc for
FAKE_VERSIONS = """
GLIBC_2.2.5 { global: banner; local: *; };
GLIBC_2.34 { global: __libc_start_main; } GLIBC_2.2.5;
GLIBC_PRIVATE { global: __libc_early_init; } GLIBC_2.34;
"""
ATTACKER = "int main(void) { return *(volatile int *)0; }\n"
ENTER_ROOT = ('mount --make-rprivate / && mount --bind "$1" "$1" && cd "$1" && mkdir -p .old '
              '&& pivot_root . .old && exec /attacker')
VICTIM = "#include <stdlib.h>\nint main(void) { abort(); }\n"


def _id_of(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return build_id(fd_reader(fd))
    finally:
        os.close(fd)


def _gcc(out: Path, source: str, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-g", "-o", str(out), str(src), *flags], check=True, capture_output=True)
    return out


def _attacker_root(tmp: Path) -> Path:
    """A root like a container image's: the host's loader, a forged libc, the program."""
    real_id = _id_of(HOST_LIBC)
    (tmp / "fake.map").write_text(FAKE_VERSIONS)
    fake = _gcc(tmp / "libc.so.6", FAKE_LIBC, "-shared", "-fPIC", "-nostdlib", "-O1",
                "-Wl,-soname,libc.so.6", f"-Wl,--version-script={tmp / 'fake.map'}",
                f"-Wl,--build-id=0x{real_id}")
    assert _id_of(fake) == real_id and fake.read_bytes() != HOST_LIBC.read_bytes()
    root = tmp / "root"
    (root / HOST_LIBC.parent.relative_to("/")).mkdir(parents=True)
    (root / LOADER.parent.relative_to("/")).mkdir(parents=True, exist_ok=True)
    shutil.copy(fake, root / HOST_LIBC.relative_to("/"))
    shutil.copy(LOADER, root / LOADER.relative_to("/"))
    _gcc(root / "attacker", ATTACKER)
    return root


def _crash(argv, signal: int) -> int:
    proc = subprocess.Popen(argv, preexec_fn=crashkit.allow_cores, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rc = proc.wait(timeout=60)
    assert rc in (-signal, 128 + signal), f"{argv} exited {rc}"
    return proc.pid


def test_forged_build_id_does_not_reach_another_tenants_analysis(collector_installed, tmp_path):
    data = collector_installed
    config = load_config(data)
    spool = config.spool_dir
    root = _attacker_root(tmp_path)
    victim = _gcc(tmp_path / "victim", VICTIM)

    # a mount namespace of its own whose root is ``root`` (pivot_root, as a
    # container runtime does): the kernel shows its paths as the attacker sees them
    unshare = subprocess.Popen(["unshare", "-m", "--fork", "--kill-child", "sh", "-c", ENTER_ROOT, "-", str(root)],
                               preexec_fn=crashkit.allow_cores, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    unshare.wait(timeout=60)
    attacker_bundle = next(b for b in _wait_new(spool, set()) if read_meta(b).comm == "attacker")
    victim_bundle = bundle_of(spool, _crash([str(victim)], 6))

    attacker_meta, victim_meta = read_meta(attacker_bundle), read_meta(victim_bundle)
    assert str(HOST_LIBC) in attacker_meta.maps and str(HOST_LIBC) in victim_meta.maps

    # each bundle links the very file its own process mapped
    rel = HOST_LIBC.relative_to("/")
    assert (victim_bundle / "root" / rel).read_bytes() == HOST_LIBC.read_bytes()
    assert (attacker_bundle / "root" / rel).read_bytes() == (root / rel).read_bytes()

    store = Store(config.database_url)
    try:
        attacked = process_bundle(config, store, attacker_bundle).analysis
        victim_done = process_bundle(config, store, victim_bundle)
        victim_analysis = victim_done.analysis
        # once the bundles are pruned, the crash is analyzed again from its own files, by content
        for bundle in (attacker_bundle, victim_bundle):
            shutil.rmtree(bundle)
        attacker_id = next(cid for cid, _ in store.crash_ids() if cid != victim_done.crash.id)
        reprocess(config, store)
        again = Analysis.from_dict(store.crash(victim_done.crash.id).analysis)
        attacked_again = Analysis.from_dict(store.crash(attacker_id).analysis)
    finally:
        store.close()
    real = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stdout.splitlines()[0].split()[-1]
    assert victim_analysis.libc == f"glibc {real}"
    crashed = victim_analysis.crashing_thread
    libc_frames = [f for f in crashed.frames if f.module == str(HOST_LIBC)]
    assert libc_frames and any(f.function and f.function.endswith("abort") for f in libc_frames), \
        [(f.function, f.module) for f in crashed.frames]
    assert attacked.libc == "glibc 9.99"  # the attacker's own crash is analyzed with its own file

    assert again.libc == victim_analysis.libc
    # and the attacker's crash still with its own file, through the sandbox's copy of its stored files
    assert attacked_again.libc == "glibc 9.99"
    assert [f.function for f in again.crashing_thread.frames] == \
        [f.function for f in victim_analysis.crashing_thread.frames]
    assert not [d for d in os.listdir(data / "files") if d != "sha256"]  # nothing keyed by a build-id


def _wait_new(spool: Path, known: set[str], timeout: float = 30.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in finished_bundles(spool) if b.name not in known]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no new bundle in {spool}")
