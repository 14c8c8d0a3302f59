"""The kiosk in a real browser: Debian's Chromium driven by Playwright.

What a teacher does in class, on the built-in demo library served by the real waitress
server: open the home page, click through 学段/年级 → 学科 → the lesson package
"几分之一", play its micro-lesson video and read its PDFs rendered by pdf.js; the same
pages without JavaScript and in English; usage events arriving in ``usage.db``. Every
test also asserts that the browser saw no console error, no uncaught exception, no CSP
violation and no request to any host but the appliance.

Screenshots at projector (1024x768) and lab-phone (390x844) size go to tests/artifacts/.
Run: ``.venv/bin/python -m pytest tests/test_browser.py -q`` (about 20 s).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from browser import (  # noqa: F401  (browser is a fixture)
    LAB_PHONE,
    PROJECTOR,
    browser,
    open_context,
    requires_browser,
    screenshot,
)

pytestmark = [pytest.mark.browser, requires_browser]

LESSON_TITLE = "几分之一"
STAGE, GRADE, SUBJECT = "小学", "三年级", "数学"
CONTENT_URL = re.compile(r"^/content/[0-9a-f]{64}$")

# Samples every 5th pixel of a canvas: how many distinct colours (quantised to 4 bits per
# channel), and what share of the pixels is not the most common colour (the background,
# white paper or a dark slide). A page pdf.js really drew has text and shapes on a
# background; a failed or not yet painted canvas is one flat colour.
CANVAS_STATS = """canvas => {
  const w = canvas.width, h = canvas.height;
  const data = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const counts = new Map();
  let total = 0;
  for (let i = 0; i < data.length; i += 4 * 5) {
    const key = (data[i] >> 4) << 8 | (data[i + 1] >> 4) << 4 | (data[i + 2] >> 4);
    counts.set(key, (counts.get(key) || 0) + 1);
    total++;
  }
  const top = Math.max(...counts.values());
  return {width: w, height: h, colours: counts.size, foreground: 1 - top / total};
}"""

# Layout check: nothing wider than the screen (no sideways scrolling on a lab screen).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 1 && getComputedStyle(el).position !== "fixed") {
      wide.push(el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ").join(".") : "")
                + " right=" + Math.round(box.right));
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: width, wide: wide.slice(0, 8)};
}"""


@dataclass
class Demo:
    url: str
    lesson_id: str  # the lesson package 几分之一
    video_id: str  # its 微课视频 part (usage events name the part that was played)


@pytest.fixture
def demo(live_server, ctx) -> Demo:
    """The live server with the demo library, and the ids of the lesson package."""
    with ctx.cache.catalog() as catalog:
        db = catalog.db
        row = db.execute("SELECT id FROM resources WHERE parent_id IS NULL AND kind = "
                         "'lesson_package' AND title LIKE ?", [f"%{LESSON_TITLE}%"]).fetchone()
        assert row, "the demo library has no lesson package 几分之一"
        video = db.execute("SELECT id FROM resources WHERE parent_id = ? AND kind = 'video' "
                           "ORDER BY lesson_no, position", [row[0]]).fetchone()
        assert video, "the lesson package has no video part"
    return Demo(url=live_server.url, lesson_id=row[0], video_id=video[0])


def _query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def browse_to_lesson(page, demo: Demo, *, via_subject: bool = True) -> None:
    """Home → 小学 三年级 tile → (数学 tile) → the lesson's card, by clicking."""
    page.goto("/")
    stage = page.locator("section.stage").filter(
        has=page.locator("h2 a", has_text=STAGE))
    stage.locator("a.tile").filter(has_text=GRADE).click()
    page.wait_for_url(re.compile(r"/browse\?"))
    assert _query(page) == {"stage": STAGE, "grade": GRADE}
    if via_subject:
        page.locator("ul.tiles a.tile").filter(has_text=SUBJECT).click()
        page.wait_for_url(re.compile(r"subject="))
        assert _query(page) == {"stage": STAGE, "grade": GRADE, "subject": SUBJECT}
    card = page.locator("li.card a").filter(
        has=page.locator(".card-title", has_text=LESSON_TITLE))
    card.first.click()
    page.wait_for_url(f"**/r/{demo.lesson_id}")


def play_video(page, seconds: float, *, click: bool = False):
    """Start the first video, let it run ``seconds``; returns its locator.

    ``click``: as a teacher does, on the player's own play button (bottom left of the
    native controls); otherwise with play().
    """
    video = page.locator("video.player").first
    video.scroll_into_view_if_needed()
    if click:
        video.hover()  # shows the controls
        box = video.bounding_box()
        page.mouse.click(box["x"] + 24, box["y"] + box["height"] - 48)
    else:
        video.evaluate("v => v.play()")  # resolves once playback has started
    page.wait_for_function(
        "s => { const v = document.querySelector('video.player'); return v.currentTime >= s; }",
        arg=seconds, timeout=15_000)
    return video


def wait_pdf_rendered(figure) -> dict:
    """Scroll a pdf.js figure into view, wait for its first page, return canvas stats."""
    figure.scroll_into_view_if_needed()
    figure.page.wait_for_function(
        "f => f.dataset.rendered === '1' || f.dataset.error === '1'",
        arg=figure.element_handle(), timeout=20_000)
    assert figure.get_attribute("data-error") is None, (
        "pdf.js could not show " + figure.get_attribute("data-src") + ": "
        + figure.locator(".pdf-view__error").inner_text())
    assert int(figure.get_attribute("data-pages")) >= 1
    return figure.locator("canvas").evaluate(CANVAS_STATS)


def assert_not_blank(stats: dict, what: str) -> None:
    assert stats["width"] >= 150 and stats["height"] >= 150 * 9 / 16, (what, stats)
    # Text and shapes cover some of the page (0.5 %: a sparse title page still has more).
    assert stats["foreground"] > 0.005 and stats["colours"] >= 4, (what, stats)


def assert_fits(page, where: str) -> None:
    layout = page.evaluate(OVERFLOW)
    assert layout["scrollWidth"] <= layout["width"] + 1, (where, layout)


# ----------------------------------------------------------------------------- tests

def test_teacher_browses_plays_the_video_and_reads_the_pdf(browser, demo):
    """The issue's proof, on a projector-sized screen, then again on a phone-sized one."""
    with open_context(browser, demo.url, viewport=PROJECTOR) as (context, watch):
        page = context.new_page()
        page.goto("/")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert_fits(page, "home 1024")
        screenshot(page, "home-1024x768")

        browse_to_lesson(page, demo)
        assert page.locator("h1").inner_text().strip().endswith(LESSON_TITLE)

        # The micro-lesson plays: time advances, frames are decoded, no media error.
        video = play_video(page, 0.5)
        first = video.evaluate("v => v.currentTime")
        page.wait_for_timeout(600)
        state = video.evaluate("""v => ({t: v.currentTime, error: v.error && v.error.code,
            paused: v.paused, w: v.videoWidth, h: v.videoHeight, ready: v.readyState,
            frames: v.getVideoPlaybackQuality().totalVideoFrames,
            audioBytes: v.webkitAudioDecodedByteCount})""")
        assert state["t"] > first + 0.2, (first, state)
        assert state["error"] is None and not state["paused"], state
        assert state["w"] > 0 and state["h"] > 0 and state["frames"] > 5, state
        assert state["audioBytes"] > 0, state  # the AAC track decodes too
        video.evaluate("v => v.pause()")

        # Every PDF of the lesson is drawn by pdf.js, the first page not blank.
        figures = page.locator("figure.pdf-view")
        assert figures.count() >= 1
        for i in range(figures.count()):
            stats = wait_pdf_rendered(figures.nth(i))
            assert_not_blank(stats, figures.nth(i).get_attribute("data-src"))
        screenshot(page, "lesson-1024x768-pdf")
        page.evaluate("window.scrollTo(0, 0)")
        assert_fits(page, "lesson 1024")
        screenshot(page, "lesson-1024x768")
        screenshot(page, "lesson-1024x768-full", full_page=True)
    watch.assert_clean()

    with open_context(browser, demo.url, viewport=LAB_PHONE, is_mobile=True,
                      has_touch=True) as (context, watch):
        page = context.new_page()
        page.goto("/")
        assert_fits(page, "home 390")
        screenshot(page, "home-390x844")
        browse_to_lesson(page, demo, via_subject=False)
        video = play_video(page, 0.3)
        assert video.evaluate("v => v.error") is None
        video.evaluate("v => v.pause()")
        stats = wait_pdf_rendered(page.locator("figure.pdf-view").first)
        assert_not_blank(stats, "first PDF at 390x844")
        screenshot(page, "lesson-390x844-pdf")
        page.evaluate("window.scrollTo(0, 0)")
        assert_fits(page, "lesson 390")
        screenshot(page, "lesson-390x844")
        screenshot(page, "lesson-390x844-full", full_page=True)
    watch.assert_clean()


def test_watch_sees_csp_violations_and_foreign_requests(browser, demo):
    """The clean-page assertions of the other tests are not vacuous."""
    with open_context(browser, demo.url) as (context, watch):
        page = context.new_page()
        page.goto("/")
        # An inline script and an image from another origin (loopback, so even if the CSP
        # let it through nothing would leave the machine): both blocked by the page CSP.
        page.evaluate("""() => {
            const s = document.createElement("script");
            s.textContent = "window.inlineRan = true";
            document.body.appendChild(s);
            const img = document.createElement("img");
            img.src = "http://127.0.0.2:9/x.png";
            document.body.appendChild(img);
        }""")
        deadline = time.monotonic() + 5
        while len(watch.csp_violations) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert page.evaluate("window.inlineRan") is None
    joined = "\n".join(watch.csp_violations)
    assert "script-src" in joined and "img-src" in joined, watch.csp_violations
    # Chromium reports the blocked image as a request (failed: "csp").
    assert watch.foreign_requests() == ["http://127.0.0.2:9/x.png"]
    assert watch.failed_requests == ["GET http://127.0.0.2:9/x.png: csp"], watch.failed_requests


def test_playing_the_video_records_usage_events(browser, demo, ctx):
    with open_context(browser, demo.url) as (context, watch):
        page = context.new_page()
        page.goto(f"/r/{demo.lesson_id}")
        video = play_video(page, 1.6, click=True)
        assert video.get_attribute("data-resource") == demo.video_id
        video.evaluate("v => v.pause()")  # pause sends view-progress (≥ 1 s watched)

        deadline = time.monotonic() + 10
        while True:
            with ctx.usage.outbox() as outbox:
                events = [e for e in outbox.events() if e["resource"] == demo.video_id]
            types = {e["type"] for e in events}
            if {"view-start", "view-progress"} <= types or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        terminal = page.evaluate("localStorage.getItem('shuqiao.terminal')")
    watch.assert_clean()

    assert {"view-start", "view-progress"} <= types, events
    progress = next(e for e in events if e["type"] == "view-progress")
    assert 1.0 <= progress["seconds"] <= 10, progress
    for event in events:
        # A pseudonymous terminal id kept by the browser, never a name.
        assert event["terminal"] == terminal and terminal.startswith("t-"), event
        assert event["role"] == "student", event
        assert event["state"] == "pending", event


def test_browsing_works_without_javascript(browser, demo):
    with open_context(browser, demo.url, java_script_enabled=False) as (context, watch):
        page = context.new_page()
        browse_to_lesson(page, demo, via_subject=False)

        figure = page.locator("figure.pdf-view").first
        link = figure.locator("a.pdf-fallback")
        assert link.is_visible()
        href = link.get_attribute("href")
        assert CONTENT_URL.match(href), href
        assert figure.get_attribute("data-rendered") is None
        assert figure.locator("canvas").count() == 0

        video = page.locator("video.player").first
        assert video.is_visible()
        assert video.get_attribute("controls") is not None
        assert CONTENT_URL.match(video.get_attribute("src"))

        response = context.request.get(href)
        assert response.status == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.body()[:5] == b"%PDF-"
        screenshot(page, "lesson-1024x768-nojs", full_page=True)
    watch.assert_clean()


def test_english_switch_keeps_chinese_data(browser, demo):
    with open_context(browser, demo.url) as (context, watch):
        page = context.new_page()
        page.goto("/")
        assert page.locator(".searchbox button").inner_text() == "搜索"
        page.locator("nav.topnav a[hreflang='en']").click()
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.locator(".searchbox button").inner_text() == "Search"
        assert page.locator(".topnav a").inner_text() == "中文"
        stage = page.locator("section.stage h2 a").first.inner_text()
        assert stage == f"{STAGE} · Primary", stage
        tile = page.locator("section.stage a.tile").filter(has_text=GRADE).first
        assert "Grade 3" in tile.inner_text()
        assert page.locator("section.subjects a.tile").filter(has_text=SUBJECT).count() == 1

        # The choice sticks (cookie) while browsing on, and data stays Chinese.
        browse_to_lesson(page, demo)
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("h1").inner_text().strip().endswith(LESSON_TITLE)
        assert page.locator(".resource-head .badge").first.inner_text() == "Lesson package"
        assert page.locator("nav.toc").get_attribute("aria-label") == "Contents"
        badges = page.locator("section.part h3 .badge").all_inner_texts()
        assert "Video" in badges and "Courseware" in badges, badges
        assert "微课视频" in page.locator("section.part h3").first.inner_text()
        figure = page.locator("figure.pdf-view").first
        wait_pdf_rendered(figure)
        assert "Page" in figure.locator(".pdf-view__pageinfo").inner_text()
        assert figure.locator("a.pdf-fallback").inner_text().startswith("Open PDF")
        screenshot(page, "lesson-1024x768-en")
    watch.assert_clean()


def test_language_switch_stays_on_the_same_page(browser, demo):
    with open_context(browser, demo.url) as (context, watch):
        page = context.new_page()
        page.goto(f"/browse?stage={STAGE}&grade={GRADE}")
        page.locator("nav.topnav a[hreflang='en']").click()
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert _query(page).get("grade") == GRADE, page.url
        page.goto(f"/search?q={LESSON_TITLE}")
        page.locator("nav.topnav a[hreflang='zh-CN']").click()
        page.wait_for_function("document.documentElement.lang === 'zh-CN'")
        assert _query(page).get("q") == LESSON_TITLE, page.url
    watch.assert_clean()


def test_pages_have_an_icon(browser, demo):
    with open_context(browser, demo.url) as (context, watch):
        page = context.new_page()
        page.goto("/")
        icon = page.evaluate("""() => {
            const link = document.querySelector("link[rel~='icon']");
            return link ? link.getAttribute("href") : "/favicon.ico";
        }""")
        response = context.request.get(icon)
        assert response.ok, f"{icon}: {response.status}"
        assert response.headers["content-type"].startswith("image/")
    watch.assert_clean()
