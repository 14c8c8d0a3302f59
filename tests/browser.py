"""Driving Debian's Chromium with Playwright: launch, per-test contexts, and watchers.

Import what a browser test module needs; fixtures defined here are only seen by pytest
when the test module imports them (this is not a conftest)::

    from browser import ARTIFACTS, browser, open_context, requires_browser  # noqa: F401

    pytestmark = [pytest.mark.browser, requires_browser]

    def test_home(browser, live_server):
        with open_context(browser, live_server.url) as (context, watch):
            page = context.new_page()
            page.goto(live_server.url + "/")
        watch.assert_clean()

* Chromium is Debian's ``/usr/bin/chromium`` (``playwright install`` is neither needed
  nor working here); the PyPI ``playwright`` package only drives it. Tests skip with a
  reason when either is missing.
* One browser per test module (module-scoped ``browser`` fixture: launching costs about a
  second), a fresh context per test (its own cookies, localStorage and cache).
* A :class:`Watch` records, for one context, console errors, uncaught page errors,
  Content-Security-Policy violations (an init script listens for
  ``securitypolicyviolation``), failed requests, HTTP errors and every request's host,
  so a test can assert that a page was clean and stayed on the LAN server.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # gitignored; screenshots go here

# Headless Chromium that talks to nobody but the page's server: no component updates,
# safe-browsing lists, sync, QUIC probes or first-run pages. --no-sandbox because tests
# often run as root (in containers), where Chromium's sandbox refuses to start.
# Autoplay without a gesture lets a test start a <video> with play().
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--autoplay-policy=no-user-gesture-required",
)

# Screen sizes the kiosk must work on.
PROJECTOR = {"width": 1024, "height": 768}  # classroom projector PC
LAB_PHONE = {"width": 390, "height": 844}  # small lab terminal / phone-sized screen

# Reports CSP violations to the console with a marker the Watch picks up. Chromium logs
# "Refused to …" itself too, but this also catches report-only and worker violations
# with their exact directive. Runs before any page script, in every frame.
_CSP_SCRIPT = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP-VIOLATION " + JSON.stringify({
    directive: e.effectiveDirective || e.violatedDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
    disposition: e.disposition}));
}, true);
"""


def unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


requires_browser = pytest.mark.skipif(unavailable_reason() is not None,
                                      reason=unavailable_reason() or "browser available")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the test module."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=list(LAUNCH_ARGS), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watch:
    """What one browser context did: problems and the hosts it talked to."""

    allowed_origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, context) -> None:
        context.add_init_script(_CSP_SCRIPT)
        context.on("page", self._attach_page)
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("requestfailed", self._on_failed)
        context.on("response", self._on_response)

    def _attach_page(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))
        page.on("worker", self._attach_worker)

    def _attach_worker(self, worker) -> None:
        # pdf.js parses in a worker; its console (and errors) would be lost otherwise.
        worker.on("console", self._on_console)

    def _on_console(self, message) -> None:
        text = message.text
        if text.startswith("CSP-VIOLATION "):
            self.csp_violations.append(text[len("CSP-VIOLATION "):])
        elif "Content Security Policy" in text:
            self.csp_violations.append(text)
        elif message.type == "error":
            location = message.location or {}
            self.console_errors.append(f"{location.get('url', '')}:{location.get('lineNumber', '')}: "
                                       f"{text}")

    def _on_failed(self, request) -> None:
        failure = request.failure or ""
        # A <video> cancels its range requests whenever it has buffered enough or the
        # page is left; that is normal and not a failure of the server.
        if "ERR_ABORTED" in failure and request.resource_type == "media":
            return
        self.failed_requests.append(f"{request.method} {request.url}: {failure}")

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self.http_errors.append(f"{response.status} {response.request.method} {response.url}")

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the server under test (data: and blob: URLs are local)."""
        allowed = urlsplit(self.allowed_origin)
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if (parts.scheme, parts.hostname, parts.port) != (allowed.scheme, allowed.hostname,
                                                               allowed.port):
                out.append(url)
        return out

    def problems(self) -> dict[str, list[str]]:
        found = {
            "console errors": self.console_errors,
            "page errors": self.page_errors,
            "CSP violations": self.csp_violations,
            "failed requests": self.failed_requests,
            "HTTP errors": self.http_errors,
            "requests to other hosts": self.foreign_requests(),
        }
        return {name: items for name, items in found.items() if items}

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "browser reported problems:\n" + "\n".join(
            f"  {name}:\n" + "\n".join(f"    {item}" for item in items)
            for name, items in problems.items())


@contextlib.contextmanager
def open_context(browser, base_url: str, *, viewport: dict | None = None,
                 **options) -> Iterator[tuple[object, Watch]]:
    """A fresh context on ``base_url`` with a :class:`Watch`; closed on exit.

    ``options`` go to ``browser.new_context`` (``java_script_enabled``, ``locale``…).
    Navigation and waits time out after 10 s instead of Playwright's 30 s, so a broken
    page fails quickly.
    """
    options.setdefault("locale", "zh-CN")
    context = browser.new_context(base_url=base_url, viewport=viewport or PROJECTOR,
                                  service_workers="block", **options)
    context.set_default_timeout(10_000)
    watch = Watch(allowed_origin=base_url)
    watch.attach(context)
    try:
        yield context, watch
    finally:
        context.close()


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of ``page`` as tests/artifacts/<name>.png and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path
