"""The web UI end to end in a real headless Chromium (Debian's ``chromium``,
driven by Playwright), against the real server (``coretriage web``) over a
data dir holding crashes from real cores and users made with the CLI.

Full-page screenshots of every page go to ``test-artifacts/screenshots/``
at the repository root, to be looked at by a person.

Nothing here skips: without Playwright or Chromium the tests fail and say
what to install (``make test`` installs both).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webserver import add_user, web_server


ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN, ADMIN_PW = "root-admin", "admin-password-1"
VIEWER, VIEWER_PW = "ann", "viewer-password-1"
TIMEOUT_MS = 60_000  # a page or a click on a loaded machine; each wait ends as soon as it is done


@pytest.fixture(scope="module")
def site(tmp_path_factory, samples):
    """A data dir with two real crashes (segv, double_free) and two users,
    served by ``coretriage web``. Yields (base URL, data dir)."""
    from coretriage.ingest import ingest
    from coretriage.store import Store
    from coretriage.config import load_config

    root = tmp_path_factory.mktemp("web")
    config = load_config(root / "data")
    config.data_dir.mkdir(parents=True)
    store = Store(config.database_url)
    try:
        for name, meta in (("segv", {"host": "web-1", "image": "shop:1.2", "container": "shop-api"}),
                           ("double_free", {"host": "worker-7", "image": "billing:3.4",
                                            "container": "billing-worker"})):
            sample = samples(name)
            ingest(config, store, sample.core, sample.exe, meta=meta)
    finally:
        store.close()
    add_user(config.data_dir, ADMIN, "admin", ADMIN_PW)
    add_user(config.data_dir, VIEWER, "viewer", VIEWER_PW)
    with web_server(config.data_dir, root / "server.log") as base:
        yield base, config.data_dir


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install playwright (make test does); "
                    "never `playwright install`, the tests use Debian's chromium")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) whose page fails the test on a
    JavaScript error, a console error or a failed request."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    p = context.new_page()
    problems: list[tuple[str, str]] = []  # (url, what happened)
    p.on("pageerror", lambda exc: problems.append((p.url, f"page error: {exc}")))
    p.on("console", lambda msg: problems.append((msg.location.get("url") or p.url,
                                                 f"console error: {msg.text} (on {p.url})"))
         if msg.type == "error" else None)
    p.on("requestfailed", lambda req: problems.append((req.url, f"request failed: {req.failure}")))
    p.on("response", lambda r: problems.append((r.url, f"HTTP {r.status}")) if r.status >= 400 else None)
    p.expected_errors = []  # URLs a test means to be refused
    yield p
    context.close()
    unexpected = [f"{url}: {what}" for url, what in problems if url not in p.expected_errors]
    assert not unexpected, "\n".join(unexpected)


def shot(page, name: str) -> None:
    """Save a full-page screenshot; the page must fit the window's width."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')).slice(0, 5)""")
    assert not wide, f"{name}: wider than the {page.viewport_size['width']} px window: {wide}"


def log_in(page, base: str, user: str, password: str, screenshot: str | None = None) -> None:
    page.goto(base + "/")
    assert page.url.startswith(base + "/login"), "the group list must ask for a login first"
    assert page.get_by_role("heading", name="Log in").is_visible()
    if screenshot:
        shot(page, screenshot)
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")
    assert page.get_by_text(f"{user} (").is_visible()


def test_admin_triages_a_crash(site, page):
    base, data_dir = site
    # a wrong password first: the form says so and stays on the login page
    page.goto(base + "/login")
    page.get_by_label("User").fill(ADMIN)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_text("Wrong user name or password.").is_visible()

    log_in(page, base, ADMIN, ADMIN_PW, screenshot="01-login")

    # the group list: one group per real core, with where they came from
    rows = page.locator("table.groups tbody tr")
    assert rows.count() == 2
    listing = page.locator("table.groups").inner_text()
    assert "header_length" in listing and "session_release" in listing
    assert "web-1" in listing and "billing:3.4" in listing
    assert page.locator("table.groups svg.spark").count() == 2
    assert "2 match" in page.locator("h1").inner_text()
    shot(page, "02-groups")

    # the search box finds the double free's group, and only it
    page.get_by_placeholder("search signatures and frames").fill("session_release")
    page.get_by_placeholder("search signatures and frames").press("Enter")
    page.wait_for_url(re.compile(r".*[?&]q=session_release"))
    assert rows.count() == 1
    assert "session_release" in rows.first.inner_text() and "header_length" not in rows.first.inner_text()
    assert page.get_by_placeholder("search signatures and frames").input_value() == "session_release"
    shot(page, "03-search")

    # the group: signature, how it was made, the latest backtrace, its crashes
    rows.first.locator("td.sig a").click()
    page.wait_for_url(re.compile(r".*/groups/\d+$"))
    group_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("h1").inner_text().startswith(f"g{group_id}")
    assert "session_release" in page.locator("p.sig").inner_text()
    assert page.get_by_role("heading", name="How the signature was made").is_visible()
    assert page.locator("table.frames tr.key").count() >= 1
    crashes = page.locator("table.crashes a")
    assert crashes.count() == 1
    shot(page, "04-group")

    # a crash: signal, abort message, registers, modules; admins get the core
    crash_id = crashes.first.inner_text()
    crashes.first.click()
    page.wait_for_url(base + f"/crashes/{crash_id}")
    body = page.locator("main").inner_text()
    assert f"Crash {crash_id}" in body and "SIGABRT" in body
    assert "free(): double free detected in tcache 2" in body
    assert "worker-7" in body and "billing-worker" in body
    assert page.get_by_role("heading", name="Registers").is_visible()
    assert page.get_by_role("heading", name="Modules").is_visible()
    core_link = page.get_by_role("link", name="download core")
    assert core_link.count() == 1
    core = page.request.get(base + core_link.get_attribute("href"))
    assert core.status == 200 and core.body()[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic
    shot(page, "05-crash")

    # back to its group; acknowledge it with a note through the form
    page.locator("main").get_by_role("link", name=f"g{group_id}").first.click()
    page.wait_for_url(base + f"/groups/{group_id}")
    form = page.locator("form.state-form")
    form.locator("select[name=state]").select_option("acknowledged")
    form.locator("input[name=note]").fill("BILL-42: double free in session cleanup, owner ann")
    form.get_by_role("button", name="Set state").click()
    page.wait_for_url(base + f"/groups/{group_id}")
    assert page.locator(".flash").inner_text() == f"g{group_id} is now acknowledged."
    # persisted: a fresh load shows it, the list shows it, the database holds it
    page.reload()
    assert page.locator(".flash").count() == 0
    assert page.locator("h1 .state").inner_text().lower() == "acknowledged"
    assert form.locator("select[name=state]").input_value() == "acknowledged"
    assert "BILL-42: double free in session cleanup" in page.locator("dl.facts").inner_text()
    shot(page, "06-group-acknowledged")
    page.goto(base + "/?state=acknowledged")
    assert rows.count() == 1 and "session_release" in rows.first.inner_text()
    from coretriage.store import Store
    from coretriage.config import load_config
    store = Store(load_config(data_dir).database_url)
    try:
        stored = store.group(group_id)
    finally:
        store.close()
    assert stored.state == "acknowledged" and stored.note.startswith("BILL-42")

    # export the crash as markdown by following the link; a text document has
    # no <link rel=icon>, so Chromium asks for /favicon.ico, which the server lacks
    page.expected_errors.append(base + "/favicon.ico")
    page.goto(base + f"/crashes/{crash_id}")
    page.locator("p.exports").get_by_role("link", name="markdown").click()
    page.wait_for_url(re.compile(rf".*/export/{crash_id}\?format=markdown"))
    text = page.locator("body").inner_text()
    assert text.startswith(f"### Crash `{crash_id}`")
    assert "session_release" in text and "SIGABRT" in text
    assert "free(): double free detected in tcache 2" in text
    shot(page, "07-export-markdown")

    # log out: back to the login page, and the list needs a login again
    page.goto(base + "/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(base + "/login")
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")


def test_viewer_cannot_fetch_cores(site, page):
    base, _ = site
    log_in(page, base, VIEWER, VIEWER_PW)
    assert page.get_by_text(f"{VIEWER} (viewer)").is_visible()
    page.locator("table.groups td.sig a").first.click()
    page.wait_for_url(re.compile(r".*/groups/\d+$"))
    assert page.locator("form.state-form").count() == 0  # viewers are read-only
    page.locator("table.crashes a").first.click()
    page.wait_for_url(re.compile(r".*/crashes/c[0-9a-f]{12}$"))
    crash_id = page.url.rsplit("/", 1)[1]
    assert page.locator("h1").inner_text() == f"Crash {crash_id}"
    assert page.get_by_role("link", name="download core").count() == 0
    assert "download core" not in page.content()
    shot(page, "08-viewer-crash")
    # typing the URL does not help
    page.expected_errors += [base + f"/crashes/{crash_id}/core", base + "/favicon.ico"]  # the bare 403 page
    response = page.goto(base + f"/crashes/{crash_id}/core")
    assert response.status == 403
    assert page.request.get(base + f"/crashes/{crash_id}/core").status == 403
