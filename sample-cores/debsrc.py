"""Debian source packages, built once with debug info, for tests that need a
real program's DWARF (the stock packages ship without it).

``source_tree(package)`` downloads the package's sources with ``apt-get
source`` (adding a deb-src line for Debian's main archive the first time:
the security archive's sources are not served) and unpacks its upstream
tarball under ``CACHE``; with ``debian_patches``, the source package as
Debian builds it (``dpkg-source -x``: the upstream tarball with Debian's
patches applied). Builds are cached there by version, so only the first run
on a machine pays for them.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

CACHE = Path("/var/cache/coretriage-test")
SOURCES = Path("/etc/apt/sources.list.d/coretriage-src.sources")
DEB_SRC = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return done.stdout


def _ensure_deb_src() -> None:
    if SOURCES.exists():
        return
    SOURCES.write_text(DEB_SRC)
    # refresh only this list: the binary lists stay as they are
    _run(["apt-get", "update", "-qq", f"-oDir::Etc::sourcelist={SOURCES}", "-oDir::Etc::sourceparts=-",
          "-oAPT::Get::List-Cleanup=0"])


def source_tree(package: str, debian_patches: bool = False) -> Path:
    """The unpacked upstream sources of ``package`` (``CACHE/<name>-<version>``),
    or with ``debian_patches`` Debian's (``CACHE/<name>-<debian version>/src``)."""
    downloads = CACHE / "downloads" / package
    downloads.mkdir(parents=True, exist_ok=True)
    if not list(downloads.glob("*.orig.tar.*")):
        _ensure_deb_src()
        try:
            _run(["apt-get", "source", "--download-only", "-qq", package], cwd=downloads)
        except RuntimeError:
            # a deb-src list written by an earlier run whose update did not finish
            _run(["apt-get", "update", "-qq", f"-oDir::Etc::sourcelist={SOURCES}", "-oDir::Etc::sourceparts=-",
                  "-oAPT::Get::List-Cleanup=0"])
            _run(["apt-get", "source", "--download-only", "-qq", package], cwd=downloads)
    if debian_patches:
        return _debian_tree(downloads)
    (orig,) = sorted(downloads.glob("*.orig.tar.*"))[-1:]
    name = orig.name.split(".orig.tar.")[0].replace("_", "-")
    tree = CACHE / name
    if not (tree / ".unpacked").exists():
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(orig) as tar:
            tar.extractall(tree, filter="data")  # never outside the tree
        (tree / ".unpacked").touch()
    (top,) = [p for p in tree.iterdir() if p.is_dir()]
    return top


def _debian_tree(downloads: Path) -> Path:
    (dsc,) = sorted(downloads.glob("*.dsc"))[-1:]
    tree = CACHE / dsc.stem.replace("_", "-")  # haproxy-2.6.12-1+deb12u3
    top = tree / "src"
    if not (tree / ".unpacked").exists():
        if top.exists():
            shutil.rmtree(top)  # an earlier run that did not finish
        tree.mkdir(parents=True, exist_ok=True)
        # --no-check: the .dsc came from apt, whose signed lists already vouched for its hashes
        _run(["dpkg-source", "--no-check", "-x", str(dsc), str(top)])
        (tree / ".unpacked").touch()
    return top
