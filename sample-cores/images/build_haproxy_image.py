#!/usr/bin/env python3
"""Build the Docker image the container tests crash HAProxy in, without a
Docker registry: a Debian root made with debootstrap from the host's own
Debian mirror, imported with ``docker import``.

    build_haproxy_image.py [--name coretriage-test/haproxy:bookworm] [--suite bookworm]
                           [--mirror URL] [--force] [--packages P,P,...] [--expect PATH,...]

The image holds only Debian's haproxy and liblua5.3-0 (``--variant=minbase``);
the buggy Lua module, the Lua script and haproxy.cfg are bind-mounted at run
time (see tests/system/dockerhost.py), so the image never needs rebuilding
when they change. Without ``--force`` an existing image of that name is kept.
``--packages`` (with ``--expect``, the files debootstrap must have left) makes
another base from the same mirror: the central image's test base
(tests/system/centralimage.py) is made this way.
The mirror defaults to the first Debian mirror in the host's apt sources
(http://deb.debian.org/debian if none is found).

Needs root, debootstrap and a running dockerd. Prints the image id last.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "coretriage-test/haproxy:bookworm"
SUITE = "bookworm"
PACKAGES = ("haproxy", "liblua5.3-0")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT = 1800
IMPORT_TIMEOUT = 600


def apt_mirror(suite: str = SUITE) -> str:
    """The host's Debian mirror for ``suite`` (not -security, not -updates)."""
    candidates: list[tuple[str, list[str]]] = []
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                for uri in fields.get("uris", []):
                    candidates.append((uri, fields.get("suites", [])))
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                candidates.append((m[1], [m[2]]))
    for uri, suites in candidates:
        if suite in suites and not uri.rstrip("/").endswith("-security"):
            return uri
    return DEFAULT_MIRROR


def image_id(name: str, docker: str = "docker") -> str | None:
    proc = subprocess.run([docker, "image", "inspect", "-f", "{{.Id}}", name],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _run(cmd: list[str], timeout: float, **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=timeout, **kw)


def build(name: str = NAME, suite: str = SUITE, mirror: str | None = None, force: bool = False,
          docker: str = "docker", workdir: Path | None = None, packages: tuple[str, ...] = PACKAGES,
          expect: tuple[str, ...] = ("usr/sbin/haproxy",), copy: tuple[tuple[str, str], ...] = ()) -> str:
    """``copy``: (host dir, dir in the image) pairs copied in after debootstrap
    (tests, caches and site-packages left out), then ``ldconfig`` in the root."""
    """Build (or keep) the image; returns its id."""
    if not force:
        existing = image_id(name, docker)
        if existing:
            print(f"{name} exists ({existing}); kept", flush=True)
            return existing
    for tool in ("debootstrap", docker):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install debootstrap docker.io)")
    mirror = mirror or apt_mirror(suite)
    tmp = Path(tempfile.mkdtemp(prefix="ct-image-", dir=workdir or "/var/tmp"))
    root = tmp / "root"
    try:
        t0 = time.monotonic()
        include = [f"--include={','.join(packages)}"] if packages else []
        _run(["debootstrap", "--variant=minbase", *include, suite, str(root), mirror], DEBOOTSTRAP_TIMEOUT)
        for src, dest in copy:
            target = root / dest.lstrip("/")
            print(f"+ copy {src} -> {target}", flush=True)
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("test", "tests", "site-packages", "__pycache__"))
        if copy:
            _run(["chroot", str(root), "ldconfig"], 120)
        t1 = time.monotonic()
        print(f"debootstrap {suite} from {mirror}: {t1 - t0:.1f} s", flush=True)
        for path in (*(e.lstrip("/") for e in expect), "etc/debian_version"):
            if not (root / path).exists():
                raise SystemExit(f"debootstrap left no /{path} in {root}")
        # apt's caches are of no use in the image
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            print(f"+ tar -C {root} -c . | {docker} import - {name}", flush=True)
            imported = subprocess.run([docker, "import", "--message", f"debootstrap {suite} {' '.join(packages)}",
                                       "-", name], stdin=tar.stdout, capture_output=True, text=True,
                                      timeout=IMPORT_TIMEOUT, check=False)
        finally:
            tar.stdout.close()
            tar_rc = tar.wait(timeout=IMPORT_TIMEOUT)
        if tar_rc != 0 or imported.returncode != 0:
            raise SystemExit(f"tar exited {tar_rc}, docker import exited {imported.returncode}: "
                             f"{imported.stderr.strip()[-2000:]}")
        print(f"docker import: {time.monotonic() - t1:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    made = image_id(name, docker)
    if not made:
        raise SystemExit(f"docker import reported success but {name} is not there")
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=NAME)
    p.add_argument("--suite", default=SUITE)
    p.add_argument("--mirror", help="Debian mirror (default: from the host's apt sources)")
    p.add_argument("--docker", default=shutil.which("docker") or "docker", help="docker CLI")
    p.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    p.add_argument("--packages", default=",".join(PACKAGES), help="Debian packages to include, comma-separated")
    p.add_argument("--expect", default="/usr/sbin/haproxy",
                   help="files the packages must have installed, comma-separated")
    p.add_argument("--copy", action="append", default=[], metavar="HOSTDIR=IMAGEDIR",
                   help="copy a host directory into the image (repeatable)")
    args = p.parse_args(argv)
    copy = tuple(tuple(c.split("=", 1)) for c in args.copy)
    packages = tuple(x for x in args.packages.split(",") if x)
    expect = tuple(x for x in args.expect.split(",") if x)
    print(build(args.name, args.suite, args.mirror, args.force, args.docker, packages=packages, expect=expect,
                copy=copy),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
