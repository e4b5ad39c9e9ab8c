"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright against uvicorn on 127.0.0.1.

Logs in, searches, opens a facet and a notice, reviews a proposal and checks the policy file changed, and
saves a screenshot of every page to the test report folder (out/test-report/web, or RADAR_TEST_REPORT_DIR).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from radar.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPORT_DIR = Path(os.environ.get("RADAR_TEST_REPORT_DIR", REPO_ROOT / "out" / "test-report" / "web"))

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium: apt-get install -y chromium"),
    pytest.mark.timeout(120),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(sqlite_url, tmp_path, monkeypatch):
    """The seeded app of test_web, served by uvicorn in a thread on a free loopback port."""
    import uvicorn

    from radar import auth
    from radar.db import get_engine
    from radar.web.app import create_app
    from test_web import prepare  # the same archive, users and policy copy as the HTTP tests

    monkeypatch.setattr(auth, "ARGON2_PARAMS", {"time_cost": 1, "memory_cost": 1024, "parallelism": 1})
    auth._hasher.cache_clear()
    engine, ids, policy = prepare(get_engine(sqlite_url), tmp_path, monkeypatch)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 15 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", ids, policy
    server.should_exit = True
    thread.join(10)
    auth._hasher.cache_clear()


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(10_000)
            problems: list[str] = []
            # A CSP violation or a script error shows up here: the pages must have none.
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page, problems
        finally:
            browser.close()


def shot(page, name: str) -> Path:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"screenshot {path} is suspiciously small"
    return path


def test_log_in_search_facet_notice_review_in_chromium(served, browser_page):
    base, ids, policy = served
    page, problems = browser_page

    page.goto(f"{base}/search?q=charger")
    assert page.url.startswith(f"{base}/login")
    shot(page, "01-login")
    page.fill("input[name=username]", "rex")
    page.fill("input[name=password]", "wrong-password")
    page.click("form[action='/login'] button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("p.error")
    page.fill("input[name=password]", "reviewer-password")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{base}/search?q=charger")

    # Search: three chargers, the matched word marked.
    assert page.locator("li.hit").count() == 3
    assert page.locator("li.hit mark").first.inner_text().lower().startswith("charger")
    shot(page, "02-search")
    page.fill("input[name=q]", "magnet")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/search?q=magnet**")
    assert page.locator("li.hit").count() == 1
    page.goto(f"{base}/search?q=charger")

    # A facet: Germany as a market narrows the chargers to one, and the URL says so.
    page.click("#facet-market a[title='juris.eu.de']")
    page.wait_for_url("**market=juris.eu.de**")
    assert page.locator("li.hit").count() == 1
    assert page.locator("#facet-market li.selected").count() == 1
    shot(page, "03-search-facet")

    # The notice: findings highlighted in the text, explained below.
    page.click("li.hit h3 a")
    page.wait_for_url(f"{base}/notices/{ids['n1']}")
    assert page.locator(".body a.finding-mark mark", has_text="fire").count() == 1
    assert page.locator("section.findings tr[id^=finding-]").count() == 4
    assert page.locator("table.diff").count() >= 1  # version 1 → 2
    shot(page, "04-notice")

    # Hostile notice text stays text: no script ran, no image element was made from it.
    page.goto(f"{base}/notices/{ids['n4']}")
    assert page.locator(".body img").count() == 0 and page.locator("h1 img").count() == 0
    assert "<script>alert(\"xss\")</script>" in page.inner_text(".body")
    shot(page, "05-notice-hostile")

    # Proposals, then the review page: accept with a comment.
    page.goto(f"{base}/proposals")
    assert page.locator("table.proposals tbody tr").count() == 1
    shot(page, "06-proposals")
    page.click("table.proposals a")
    page.wait_for_url(f"{base}/proposals/{ids['proposal']}")
    assert page.locator("figure.chart svg rect").count() >= 2
    assert page.locator(".edited-rule").is_hidden()  # shown only for "accept with edits"
    page.check("input[name=decision][value=edit]")
    assert page.locator(".edited-rule").is_visible()
    shot(page, "07-proposal-review")
    before = policy.read_text()
    page.check("input[name=decision][value=accept]")
    page.fill("textarea[name=comment]", "Evidence is clear; block in DE.")
    page.click("form.decision button[type=submit]")
    page.wait_for_url(f"{base}/proposals/{ids['proposal']}")
    assert "Accepted: proposal" in page.inner_text("p.flash")
    after = policy.read_text()
    assert after != before and "rule.toys.web_test_magnets" in after
    shot(page, "08-proposal-accepted")

    # Sources, saved searches, digest, API docs link.
    page.goto(f"{base}/sources")
    assert page.locator("#source-us_cpsc_recalls .s-failed").count() == 1
    shot(page, "09-sources")
    page.goto(f"{base}/search?q=charger&market=juris.eu.de")
    page.click("details.save summary")
    page.fill("details.save input[name=name]", "Chargers in Germany")
    page.check("details.save input[name=follow]")
    page.click("details.save button[type=submit]")
    page.wait_for_url(f"{base}/searches")
    assert "Chargers in Germany" in page.inner_text("table.list")
    shot(page, "10-saved-searches")
    page.goto(f"{base}/digest?week=2024-W19")
    shot(page, "11-digest")

    page.click("form.logout button[type=submit]")
    page.wait_for_url(f"{base}/login")
    assert not problems, f"browser console errors: {problems}"


def test_admin_manages_users_and_subscriptions_in_chromium(served, browser_page):
    base, _, _ = served
    page, problems = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # the "Stop sending the digest?" question

    page.goto(f"{base}/users")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "admin-password")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{base}/users")

    # Users: add one, make them a reviewer, give them a new password.
    assert page.locator("table.users tbody tr").count() == 3
    page.fill("form.add-user input[name=username]", "nina")
    page.fill("form.add-user input[name=password]", "nina-password")
    page.select_option("form.add-user select[name=role]", "viewer")
    page.fill("form.add-user input[name=email]", "nina@example.org")
    page.click("form.add-user button[type=submit]")
    page.wait_for_url(f"{base}/users")
    assert "Added nina as viewer." in page.inner_text("p.flash")
    row = page.locator("table.users tr", has_text="nina@example.org")
    row.locator("select[name=role]").select_option("reviewer")
    row.locator("form.role button[type=submit]").click()
    page.wait_for_url(f"{base}/users")
    assert "nina is now reviewer." in page.inner_text("p.flash")
    row = page.locator("table.users tr", has_text="nina@example.org")
    assert row.locator("select[name=role]").input_value() == "reviewer"
    row.locator("input[name=password]").fill("another-password")
    row.locator("form.password button[type=submit]").click()
    page.wait_for_url(f"{base}/users")
    assert "New password set for nina." in page.inner_text("p.flash")
    ada = page.locator("table.users tr", has_text="ada@example.org")
    ada.locator("select[name=role]").select_option("viewer")
    ada.locator("form.role button[type=submit]").click()
    page.wait_for_url(f"{base}/users")
    assert "ada is the last active admin" in page.inner_text("p.flash.error")
    shot(page, "12-users")

    # Subscriptions: add one, then deactivate it, then preview the digest of another.
    page.click("header.top nav a[href='/subscriptions']")
    page.wait_for_url(f"{base}/subscriptions")
    page.click("details.add summary")
    form = page.locator("details.add form")
    form.locator("input[name=name]").fill("Nordic chargers")
    form.locator("input[name=recipients]").fill("nordic@example.org, ops@example.org")
    form.locator("input[name=markets]").fill("SE, FI")
    form.locator("input[name=categories]").fill("cat.electrical")
    form.locator("select[name=min_severity]").select_option("high")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{base}/subscriptions#subscription-*")
    assert "Added the subscription “Nordic chargers”." in page.inner_text("p.flash")
    row = page.locator("table.subscriptions tr[id^=subscription-]", has_text="Nordic chargers")
    assert row.locator(".tag.market").all_inner_texts() == ["SE", "FI"]
    assert "high and above" in row.inner_text()
    shot(page, "13-subscriptions")
    page.locator("tr.runs", has_text="Nordic chargers").locator("form.active button[type=submit]").click()
    page.wait_for_url(f"{base}/subscriptions#subscription-*")
    assert "no longer receives the digest" in page.inner_text("p.flash")
    assert "inactive" in page.locator("table.subscriptions tr[id^=subscription-]", has_text="Nordic chargers").inner_text()
    page.locator("table.subscriptions tr[id^=subscription-]", has_text="EMEA toys").locator("a", has_text="Preview digest").click()
    page.wait_for_url(f"{base}/digest?subscription=*")
    shot(page, "14-subscription-digest")
    assert not problems, f"browser console errors: {problems}"
