"""The platform's micro-lesson, end to end in a real browser: catalogue sync from the
stand-in, fetch (key handshake, decryption, a local playlist), then a terminal plays the
lesson from the appliance alone, with the platform hearing nothing while it plays."""

from __future__ import annotations

import shutil

import pytest

from browser import browser, open_context, requires_browser, screenshot  # noqa: F401
from conftest import LiveServer
from test_smartedu_fetch import Appliance, _video_lesson

pytestmark = [pytest.mark.browser, requires_browser,
              pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                 reason="the stand-in makes playable H.264 segments with ffmpeg")]


def test_a_fetched_hls_lesson_plays_from_the_appliance(browser, tmp_path):  # noqa: F811
    from app import create_app
    from standin import Standin

    with Standin(small=True) as platform:
        appliance = Appliance(tmp_path / "home", platform)
        appliance.paste()
        lesson = _video_lesson(platform)
        rid = appliance.resource_id(lesson.id)
        assert set(appliance.fetch([rid], timeout=60).values()) == {"cached"}
        platform.settle()
        platform.clear_log()

        server = LiveServer(create_app(appliance.config))
        try:
            with open_context(browser, server.url) as (context, watch):
                page = context.new_page()
                page.goto(f"/r/{rid}")
                video = page.locator("video[data-hls]").first
                video.scroll_into_view_if_needed()
                page.wait_for_function("() => window.Hls !== undefined")
                video.evaluate("v => { v.muted = true; return v.play(); }")
                page.wait_for_function(
                    "() => { const v = document.querySelector('video[data-hls]');"
                    " return v.currentTime > 0.5 && !v.error; }", timeout=20_000)
                first = video.evaluate("v => v.currentTime")
                page.wait_for_timeout(600)
                assert video.evaluate("v => v.currentTime") > first
                assert video.evaluate("v => v.videoWidth") > 0
                screenshot(page, "hls-lesson-1024x768")
            watch.assert_clean()
        finally:
            server.stop()
        platform.settle()
        assert platform.log == [], "a terminal's playback reached the platform"
