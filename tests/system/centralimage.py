"""The central image (deploy/Dockerfile), built from this checkout for the
system tests, with no registry:

- the base: Debian bookworm from the host's own mirror (debootstrap, then
  ``docker import``: sample-cores/images/build_haproxy_image.py) with this
  interpreter's CPython copied into /usr/local, the layout of
  ``python:3.11-slim-bookworm``, the Dockerfile's default base. Debian's own
  python3 (3.11.2) cannot import the redis client the wheels resolve to
  (it needs async-timeout below 3.11.3), and the wheels are this
  interpreter's. Built once, kept by its name (Python version in the tag).
- the build context: deploy/Dockerfile and wheels/, made as the README says
  (``python -m build``, then ``pip wheel`` for the dependencies from the
  local index);
- the image: ``docker build --network host`` (the Dockerfile's apt-get
  reaches the host's Debian mirror). Docker's cache keeps the apt layer, and
  the wheels' layers while the checkout's source is unchanged (the wheel is
  built reproducibly).

Everything fails loudly with the log's tail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockerhost import docker, docker_cli, image_id, tail

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PYTHON_PREFIX = Path(sys.base_prefix)
BASE = f"coretriage-test/central-base:bookworm-py{'.'.join(map(str, sys.version_info[:3]))}"
IMAGE = "coretriage-test/central:checkout"
UID = 10100  # the Dockerfile's CORETRIAGE_UID: owner of the data volume
# what the copied interpreter's extension modules link against (python:3.11-slim has the same)
BASE_PACKAGES = ("libssl3", "libffi8", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libreadline8", "libncursesw6",
                 "libexpat1", "zlib1g", "libuuid1", "libnsl2", "libcrypt1", "libtirpc3", "ca-certificates")
BUILD_TIMEOUT = 1800.0


@dataclass(frozen=True)
class CentralImage:
    name: str
    id: str
    base: str
    wheels: tuple[str, ...]
    build_seconds: float


def _logged(argv, log: Path, timeout: float, what: str, **kw) -> None:
    with open(log, "ab") as out:
        out.write(f"+ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        try:
            proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False, **kw)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what} took over {timeout:.0f} s:\n{tail(log)}")
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{tail(log)}")


def ensure_base(log: Path) -> str:
    if image_id(BASE):
        return BASE
    if PYTHON_PREFIX in (Path("/usr"), Path("/")):
        pytest.fail(f"this Python lives in {PYTHON_PREFIX}: the test base copies a self-contained CPython "
                    "(pyenv's, or /usr/local's) into the image; run the tests with one")
    sys.path.insert(0, str(ROOT / "sample-cores" / "images"))
    try:
        import build_haproxy_image as builder
    finally:
        sys.path.pop(0)
    _logged([sys.executable, builder.__file__, "--name", BASE, "--docker", docker_cli(),
             "--packages", ",".join(BASE_PACKAGES), "--expect", "",
             "--copy", f"{PYTHON_PREFIX}=/usr/local"], log, BUILD_TIMEOUT, f"building the base {BASE}")
    if not image_id(BASE):
        pytest.fail(f"the base {BASE} is not there after building it:\n{tail(log)}")
    return BASE


def build_context(ctx: Path, log: Path) -> tuple[str, ...]:
    """deploy/Dockerfile and wheels/ (coretriage's wheel and its dependencies')."""
    wheels = ctx / "wheels"
    wheels.mkdir(parents=True)
    shutil.copyfile(DOCKERFILE, ctx / "Dockerfile")
    # a fixed SOURCE_DATE_EPOCH makes the wheel the same bytes for the same source, so Docker's
    # cache keeps the install layer until the checkout changes
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
           "SOURCE_DATE_EPOCH": "315532800"}
    # no flags: the sdist, then the wheel from it (nothing is written into the checkout)
    _logged([sys.executable, "-m", "build", "--outdir", wheels, ROOT], log, 600, "building the wheel",
            cwd=ctx, env=env)
    for sdist in wheels.glob("*.tar.gz"):
        sdist.unlink()
    (wheel,) = wheels.glob("coretriage-*.whl")
    _logged([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", wheels, f"{wheel}[postgres]"], log, 600,
            "collecting the dependencies' wheels", cwd=ctx, env=env)
    return tuple(sorted(p.name for p in wheels.iterdir()))


def build_image(workdir: Path) -> CentralImage:
    log = workdir / "build.log"
    t0 = time.monotonic()
    base = ensure_base(log)
    wheels = build_context(workdir / "context", log)
    before = image_id(IMAGE)
    _logged([docker_cli(), "build", "--force-rm", "--network", "host", "--build-arg", f"BASE={base}", "--tag", IMAGE,
             workdir / "context"], log, BUILD_TIMEOUT, f"docker build of {IMAGE}",
            env={**os.environ, "DOCKER_BUILDKIT": "0"})  # the classic builder: no buildx plugin here
    made = image_id(IMAGE)
    if not made:
        pytest.fail(f"docker build succeeded but there is no {IMAGE}:\n{tail(log)}")
    if before and before != made:
        docker("rmi", before, check=False)  # the previous run's image, now untagged
    return CentralImage(IMAGE, made, base, wheels, time.monotonic() - t0)


# ---- PostgreSQL and Redis for the Compose file's own services ----

SERVICES_BASE = "coretriage-test/services-base:bookworm"
SERVICES = "coretriage-test/services:bookworm"
SERVICES_DIR = Path(__file__).parent / "images" / "services"


def build_services(workdir: Path) -> str:
    """Debian's PostgreSQL 15 and Redis in one image with an entry point
    that takes what deploy/docker-compose.yml gives the official images
    (tests/system/images/services/). The base is built once; the small
    layer on it is rebuilt from Docker's cache."""
    log = workdir / "build-services.log"
    if not image_id(SERVICES_BASE):
        sys.path.insert(0, str(ROOT / "sample-cores" / "images"))
        try:
            import build_haproxy_image as builder
        finally:
            sys.path.pop(0)
        _logged([sys.executable, builder.__file__, "--name", SERVICES_BASE, "--docker", docker_cli(),
                 "--packages", "postgresql-15,redis-server",
                 "--expect", "/usr/lib/postgresql/15/bin/postgres,/usr/bin/redis-server"],
                log, BUILD_TIMEOUT, f"building the base {SERVICES_BASE}")
    _logged([docker_cli(), "build", "--force-rm", "--network", "none", "--build-arg", f"BASE={SERVICES_BASE}",
             "--tag", SERVICES, SERVICES_DIR], log, 600, f"docker build of {SERVICES}",
            env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if not image_id(SERVICES):
        pytest.fail(f"no {SERVICES} after building it:\n{tail(log)}")
    return SERVICES
