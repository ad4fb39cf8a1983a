"""coretriage as an operator installs it: built into an sdist, a wheel built
from that sdist, installed into a throwaway venv, and run from a directory
where the source tree is out of reach. Everything it reads at run time
(templates, static files, signature lists, host-setup's files) must have
come with the package."""

from __future__ import annotations

import html.parser
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
import zipfile
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from collector.corepattern import LOCK_FD_ENV, lock_for_child, pattern_lock, read_pattern
from waiting import wait_for
from webserver import web_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1200)


def run(argv, *, cwd, check=True, locked=False, **kw):
    env = _clean_env()
    if locked:  # hand the core_pattern lock this test holds down to the child
        child = lock_for_child()
        env.update({k: v for k, v in child["env"].items() if k == LOCK_FD_ENV})
        kw["pass_fds"] = child["pass_fds"]
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=env, **kw)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                    f"{done.stderr[-3000:]}")
    return done


def _clean_env() -> dict:
    # nothing may point back at the checkout
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("CORETRIAGE_")}


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """(venv, a working directory away from the source tree, the wheel)."""
    base = tmp_path_factory.mktemp("package")
    dist = base / "dist"
    # no flags: build makes the sdist, then the wheel from that sdist
    run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=base)
    wheels = list(dist.glob("coretriage-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("coretriage-*.tar.gz")), sorted(dist.iterdir())
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=base)
    run([venv / "bin/pip", "install", "-q", wheels[0]], cwd=base)
    away = base / "elsewhere"
    away.mkdir()
    return venv, away, wheels[0]


def test_the_wheel_carries_what_is_read_at_run_time(installed):
    # host-setup/ goes in as the package collector.hostsetup.files
    names = set(zipfile.ZipFile(installed[2]).namelist())
    wanted = [f"collector/hostsetup/files/{p.name}" for p in (ROOT / "host-setup").iterdir() if p.is_file()]
    wanted += [f"webui/{p.relative_to(ROOT / 'webui')}" for sub in ("templates", "static")
               for p in (ROOT / "webui" / sub).rglob("*") if p.is_file()]
    wanted += [f"analyzer/signature/lists/{p.name}" for p in (ROOT / "analyzer/signature/lists").glob("*.txt")]
    wanted += [f"coretriage/migrations/versions/{p.name}" for p in (ROOT / "coretriage/migrations/versions").glob("*.py")]
    assert len(wanted) > 15 and not sorted(set(wanted) - names)


def test_the_package_is_imported_from_the_venv_not_the_checkout(installed):
    venv, away, _ = installed
    out = run([venv / "bin/python", "-c", "import analyzer, collector, coretriage, webui; "
               "print('\\n'.join(m.__file__ for m in (analyzer, collector, coretriage, webui)))"], cwd=away)
    for path in out.stdout.split():
        assert path.startswith(str(venv)), path


def test_version(installed):
    venv, away, _ = installed
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run([venv / "bin/coretriage", "--version"], cwd=away).stdout.strip() == f"coretriage {expected}"


def test_ingest_of_a_real_core(installed, samples, tmp_path):
    venv, away, _ = installed
    s = samples("segv")
    out = run([venv / "bin/coretriage", "--data-dir", tmp_path / "data", "ingest", s.core, "--exe", s.exe,
               "--json"], cwd=away)
    import json
    done = json.loads(out.stdout)
    assert done["signature"] == s.expected_signature
    listed = run([venv / "bin/coretriage", "--data-dir", tmp_path / "data", "list"], cwd=away).stdout
    assert s.expected_signature in listed


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.csrf: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img") and a.get("src"):
            self.links.append(a["src"])
        if tag == "input" and a.get("name") == "csrf_token":
            self.csrf = a.get("value")


def test_web_ui_login_static_files_and_groups(installed, samples, tmp_path):
    venv, away, _ = installed
    data = tmp_path / "data"
    s = samples("segv")
    coretriage = venv / "bin/coretriage"
    run([coretriage, "--data-dir", data, "ingest", s.core, "--exe", s.exe], cwd=away)
    run([coretriage, "--data-dir", data, "user", "add", "ops", "--role", "viewer", "--password-stdin"],
        cwd=away, input="correct horse battery\n")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with web_server(data, tmp_path / "web.log", command=coretriage, cwd=away) as url:
        page = opener.open(url + "/login", timeout=10)
        assert page.status == 200
        parsed = _Links()
        parsed.feed(page.read().decode())
        # files the server serves: not other hosts, not data: URIs inlined in the page (the favicon)
        local = [link for link in parsed.links
                 if not urllib.parse.urlparse(link).netloc and urllib.parse.urlparse(link).scheme in ("", "http", "https")]
        assert any(link.endswith(".css") for link in local), parsed.links
        for link in local:
            assert opener.open(urllib.parse.urljoin(url + "/login", link), timeout=10).status == 200, link
        assert parsed.csrf, "the login form carries a CSRF token"
        form = urllib.parse.urlencode({"username": "ops", "password": "correct horse battery",
                                       "csrf_token": parsed.csrf}).encode()
        groups = opener.open(url + "/login", data=form, timeout=10)
        body = groups.read().decode()
        assert groups.status == 200 and "/login" not in groups.url, groups.url
        assert re.search(r"header_length", body), body[:2000]


def test_host_setup_install_and_uninstall_on_the_real_kernel(installed, samples, tmp_path):
    venv, away, _ = installed
    data = Path(f"/tmp/ct-pkg-{os.getpid()}")  # short: core_pattern keeps 127 bytes
    coretriage = venv / "bin/coretriage"
    s = samples("segv")  # built before core_pattern changes hands
    with pattern_lock():
        before = read_pattern()
        try:
            run([coretriage, "--data-dir", data, "host-setup", "install"], cwd=away, locked=True)
            pattern = read_pattern()
            # the kernel now runs the handler from the venv
            assert pattern.startswith(f"|{venv}/bin/python") or str(data) in pattern, pattern
            proc = subprocess.run([s.exe, "GET /"], cwd=away, capture_output=True)
            assert proc.returncode == -11
            spool = data / "spool"
            metas = wait_for(lambda: list(spool.glob("*/meta.json")), "the handler's bundle", 120)
            assert (metas[0].parent / "core.zst").is_file(), sorted(spool.rglob("*"))
        finally:
            done = run([coretriage, "--data-dir", data, "host-setup", "uninstall"], cwd=away, check=False,
                       locked=True)
            restored = read_pattern()
            if restored != before:
                Path("/proc/sys/kernel/core_pattern").write_text(before + "\n")
        assert done.returncode == 0, done.stderr
        assert restored == before
