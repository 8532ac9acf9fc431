"""report.html in a real browser: Debian's Chromium, driven by Playwright, with JavaScript off.

The runs are made as the e2e testScript makes them (a real Report, a guest JUnit file folded in
inside the step that then fails, PNGs that Chromium itself rendered), not from written HTML.
Here, not in tests/unit: the Nix check phase that runs tests/unit has no browser, and a skip
there would hide a missing one here (scripts/install-system-deps.sh installs chromium).
Each page's screenshot is kept in the test's tmp directory, under artifacts/.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from vmtest.reporting import ci as ci_report
from vmtest.reporting.report import Report

# Debian's package (scripts/install-system-deps.sh), or the devShell's on PATH.
CHROMIUM = os.environ.get("VMTEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOT_SIZE = {"width": 320, "height": 200}
FAILING_TEST = "test_send_message[chromium]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/install-system-deps.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def rendered_png(browser: Browser, path: Path, text: str, colour: str) -> None:
    """A screenshot as the e2e client takes them: Chromium's own PNG of a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=SHOT_SIZE)
    page.set_content(f"<body style='margin:0;background:{colour}'><h1>{text}</h1></body>")
    page.screenshot(path=str(path))
    page.close()


def e2e_like_run(browser: Browser, out: Path, *, failing: bool) -> Path:
    """A run shaped like the e2e testScript's; returns its report.html."""
    report = Report(out, name="alicia-e2e")
    begin = report.started
    for machine, offset in (("server", 0.0), ("client", 0.3)):
        report.span("boot", begin + offset, begin + offset + 0.8, "boot", machine)
    for index, unit in enumerate(("postgresql.service", "alicia-migrate.service", "alicia.service")):
        report.span(unit, begin + 0.2 + 0.2 * index, begin + 0.35 + 0.2 * index, "unit", "server")
    try:
        with report.case("server stack comes up in order"):
            time.sleep(0.2)
        with report.case("browser smoke tests (Playwright on the client)"):
            started = datetime.now(UTC).isoformat()
            rendered_png(browser, out / "screenshots/browser/final-state.png", "the app at the end", "#dfe")
            failure = ""
            if failing:
                rendered_png(browser, out / "screenshots/browser/test_send_message_chromium_.png", "no reply", "#fcc")
                traced = out / "test-results/traced/test-smoke-py-test-send-message-chromium"
                traced.mkdir(parents=True)
                with zipfile.ZipFile(traced / "trace.zip", "w") as trace:
                    trace.writestr("trace.trace", "{}\n")
                failure = (f'<testcase classname="test_smoke" name="{FAILING_TEST}" time="0.1">'
                           '<failure message="TimeoutError: Locator.click: Timeout 45000ms exceeded.">trace</failure>'
                           "</testcase>")
            time.sleep(0.3)
            junit = out / "junit-browser.xml"
            junit.write_text(f'<testsuites><testsuite name="pytest" timestamp="{started}">'
                             '<testcase classname="test_smoke" name="test_app_loads[chromium]" time="0.1"/>'
                             f"{failure}</testsuite></testsuites>")
            cases = report.add_junit_file(junit, "browser")
            failed = [f"{case.name}: {case.message}" for case in cases if not case.passed]
            if failed:
                raise AssertionError("browser tests failed (exit 1):\n" + "\n".join(failed))
    except AssertionError:
        if not failing:
            raise
    finally:
        report.observe("health_backend", {"status": 200, "body": {"status": "ok", "database": "ok"}})
        report.write()
    return out / "report.html"


def open_page(browser: Browser, path: Path, artifacts: Path) -> tuple[Page, list[str]]:
    """``path`` opened with JavaScript off; the URLs it requested; its screenshot kept in ``artifacts``."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(path.as_uri())
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"{path.parent.name}-{path.stem}.png"), full_page=True)
    return page, requested


def bar_box(page: Page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not displayed"
    return box["x"], box["x"] + box["width"]


def test_the_failing_runs_page_shows_the_failed_browser_test_first(browser: Browser, tmp_path: Path) -> None:
    page, requested = open_page(browser, e2e_like_run(browser, tmp_path / "failing", failing=True),
                                tmp_path / "artifacts")
    assert page.locator("#outcome").inner_text() == "FAILED"
    assert page.locator("#count-failed").inner_text() == "2" and page.locator("#count-total").inner_text() == "4"
    failures = page.locator("#failures .failure")
    assert failures.count() == 2
    first = failures.first
    assert first.locator(".case-name").inner_text() == f"browser / {FAILING_TEST}"
    assert "TimeoutError: Locator.click" in first.locator(".message").inner_text()
    assert first.locator("img").evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]") == [
        True, SHOT_SIZE["width"], SHOT_SIZE["height"]], "the screenshot is embedded and decodes"
    trace = first.locator(".trace a").get_attribute("href")
    assert trace == "test-results/traced/test-smoke-py-test-send-message-chromium/trace.zip"
    assert (tmp_path / "failing" / trace).is_file(), "the trace link is relative to the page"
    assert failures.nth(1).locator(".case-name").inner_text().startswith("alicia-e2e / browser smoke tests")
    bars = page.locator("#timeline .bar")
    kinds = [bars.nth(index).get_attribute("data-kind") for index in range(bars.count())]
    assert sorted(kinds) == sorted(["boot", "boot", "unit", "unit", "unit", "step", "step", "test", "test"])
    assert page.locator("#timeline .bar.failed").count() == 2
    for index in range(bars.count()):
        box = bars.nth(index).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    step = bar_box(page, '.bar[data-kind="step"].failed')
    test = bar_box(page, '.bar[data-kind="test"].failed')
    assert step[0] - 1 <= test[0] <= test[1] <= step[1] + 1, "the browser test ran within its step"
    assert bar_box(page, '[data-lane="server"][data-kind="boot"]')[0] < bar_box(page, '[data-lane="client"]')[0]
    gallery = page.locator("#screenshots img")
    assert gallery.count() == 1 and gallery.evaluate("image => image.naturalWidth") == SHOT_SIZE["width"]
    assert page.locator('#files a[href="junit-browser.xml"]').count() == 1
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == [], "the page is self-contained"


def test_the_passing_runs_page_has_no_failure(browser: Browser, tmp_path: Path) -> None:
    page, _ = open_page(browser, e2e_like_run(browser, tmp_path / "passing", failing=False), tmp_path / "artifacts")
    assert page.locator("#outcome").inner_text() == "PASSED"
    assert page.locator("#count-failed").inner_text() == "0"
    assert page.locator("#failures .failure").count() == 0
    assert page.locator("#cases tr.case").first.locator("td").first.inner_text() == "PASS"
    assert page.locator("#timeline .bar.failed").count() == 0
    assert page.locator('#timeline .bar[data-kind="test"]').count() == 1
    assert page.locator("#screenshots img").evaluate("image => image.naturalWidth") == SHOT_SIZE["width"]


def test_the_vm_validation_page_merges_the_architectures(browser: Browser, tmp_path: Path) -> None:
    for arch in ("x86_64", "aarch64"):
        report = Report(tmp_path / "vm" / arch, name="vm-boot")
        report.span("boot", report.started - 20, report.started - 1, "boot", "vm")
        try:
            with report.case("reaches multi-user.target, no failed unit, arch and boot time"):
                if arch == "aarch64":
                    raise AssertionError("vm: boot time: booted in 300.0 s, over the budget of 240 s")
        except AssertionError:
            pass
        finally:
            report.write(junit_name="boot-junit.xml", summary_name="boot-summary.json", html_name="boot-report.html")
    _, _, merged = ci_report.merge(tmp_path / "vm")
    page, _ = open_page(browser, merged, tmp_path / "artifacts")
    assert page.locator("#outcome").inner_text() == "FAILED"
    assert page.locator("#failures .case-name").all_inner_texts() == [
        "aarch64/vm-boot / reaches multi-user.target, no failed unit, arch and boot time"]
    lanes = {page.locator("#timeline .bar").nth(index).get_attribute("data-lane")
             for index in range(page.locator("#timeline .bar").count())}
    assert lanes == {"x86_64/vm", "aarch64/vm", "x86_64/vm-boot", "aarch64/vm-boot"}
    assert page.locator('#files a[href="aarch64/boot-report.html"]').count() == 1
