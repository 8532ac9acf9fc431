"""Browser setup for the smoke tests: the system Chromium, fake media devices, artifacts per test."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

# Each test's result as a JSON line in $E2E_RESULTS as it ends, for the host to follow.
pytest_plugins = ["result_stream"]

ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", "/tmp/e2e"))
# The server as the tests' own API requests (page.request, from Playwright's driver) reach it.
SERVER = os.environ.get("E2E_SERVER", "http://server")
# The browser opens the app as http://alicia.localhost, which it resolves to the server: a
# *.localhost origin is a secure context (getUserMedia, for the voice tests) without TLS, and
# the headless shell, unlike the full browser, ignores --unsafely-treat-insecure-origin-as-secure.
APP_HOST = "alicia.localhost"
APP = f"http://{APP_HOST}"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium-headless-shell")
# Under TCG emulation a page does in seconds what takes milliseconds under KVM.
TIMEOUT_MS = int(os.environ.get("E2E_TIMEOUT_MS", "45000"))
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # Empty E2E_CHROMIUM (the Nix client): Playwright's own browsers from PLAYWRIGHT_BROWSERS_PATH.
    executable = {"executable_path": CHROMIUM} if CHROMIUM else {}
    return {
        **browser_type_launch_args,
        **executable,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--host-resolver-rules=MAP {APP_HOST} {urlsplit(SERVER).hostname}",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            # Extra flags for experiments (e.g. E2E_CHROMIUM_ARGS="--js-flags=--jitless").
            *os.environ.get("E2E_CHROMIUM_ARGS", "").split(),
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "base_url": SERVER, "viewport": {"width": 1280, "height": 800},
            "permissions": ["microphone"]}


def _screenshot(page: Page, name: str) -> None:
    shots = ARTIFACTS / "screenshots" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        # The viewport (the app's layout is one screen): a full-page capture costs twice as long.
        page.screenshot(path=str(shots / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"))
    except Exception as error:  # a crashed page must not hide the test's own failure
        print(f"screenshot {name} failed: {error}")


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def shared_context(browser: Browser, browser_context_args: dict[str, Any]) -> Iterator[BrowserContext]:
    """One browser context for the run: under TCG a context and a page per test cost 4-5 s of
    each test. Every test still starts from a fresh load of the app with empty local storage
    (the ``app`` fixture); what the tests share is the server's state, as before.
    The app's state after the last test is kept as screenshots/browser/final-state.png."""
    context = browser.new_context(**browser_context_args)
    yield context
    live = [page for page in context.pages if not page.is_closed()]
    if live:
        _screenshot(live[0], "final-state")
    context.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Page:
    """The run's page. In a traced run (``--tracing``, the re-run of failed tests) each test
    gets pytest-playwright's own fresh context instead, which records the trace."""
    if pytestconfig.getoption("--tracing") != "off":
        context: BrowserContext = request.getfixturevalue("context")
        return context.new_page()
    shared: BrowserContext = request.getfixturevalue("shared_context")
    # A test that closed or crashed the page must not take the next tests with it.
    live = [candidate for candidate in shared.pages if not candidate.is_closed()]
    return live[0] if live else shared.new_page()


@pytest.fixture(autouse=True)
def page_setup(page: Page, request: pytest.FixtureRequest) -> Iterator[Page]:
    """Long timeouts, and a failed test's last state in screenshots/browser/<test>.png (each
    screenshot costs about a second under TCG, so passing tests take none)."""
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    if request.node.stash.get(_CALL_FAILED, False):
        _screenshot(page, request.node.name)


@pytest.fixture
def app_url() -> str:
    """The app's address as the browser knows it (relative paths in page.request go to SERVER)."""
    return APP + "/"


@pytest.fixture
def app(page: Page, app_url: str) -> Page:
    """The app, loaded and ready."""
    page.goto(app_url)
    expect(page.get_by_test_id("app-root")).to_have_attribute("data-ready", "true")
    page.evaluate("localStorage.clear()")  # settings an earlier test left (the page is shared)
    return page
