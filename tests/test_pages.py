"""Kiosk pages, server-rendered: tiles, browsing the taxonomy, resource pages, search,
languages and security headers. No JavaScript is needed for any of it."""

from __future__ import annotations

import io
import json
import re

import pytest

from cache.catalog import FileSpec


@pytest.fixture
def library(ctx):
    """A small library: a textbook, and a lesson package with parts in two 课时."""
    store = ctx.cache.store
    pdf = store.put_stream(io.BytesIO(b"%PDF-1.4 textbook"))
    video = store.put_stream(io.BytesIO(b"\x00\x00\x00\x18ftypmp42 video"))
    exercise = store.put_stream(io.BytesIO(json.dumps({
        "format": "shuqiao-exercise", "version": 1, "title": "练习", "items": [
            {"id": "q1", "type": "single", "stem": "把蛋糕平均分成4份，每份是它的（　）。",
             "options": ["1/2", "1/4"], "answer": [1], "explanation": "四分之一"},
            {"id": "q2", "type": "fill", "stem": "1/5 读作（　）。", "answer": ["五分之一"]}]},
        ensure_ascii=False).encode()))
    taxonomy = dict(stage="小学", grade="三年级", subject="数学", edition="人教版", volume="上册")
    with ctx.cache.catalog() as catalog:
        book = catalog.upsert_resource(
            source="t", source_id="book", kind="textbook", title="义务教育教科书·数学三年级上册",
            files=[FileSpec(role="source", mime="application/pdf", sha256=pdf, state="cached",
                            name="math.pdf")], **taxonomy)
        package = catalog.upsert_resource(
            source="t", source_id="pkg", kind="lesson_package", title="几分之一",
            chapter=["第八单元 分数的初步认识", "1. 几分之一"], **taxonomy)
        parts = [("第一课时", 1, "video", "微课视频", FileSpec(role="video", mime="video/mp4",
                                                        sha256=video, state="cached")),
                 ("第一课时", 1, "exercise", "课后练习", FileSpec(role="exercise",
                                                          mime="application/json",
                                                          sha256=exercise, state="cached")),
                 ("第二课时", 2, "task_sheet", "学习任务单", FileSpec(role="pdf", mime="application/pdf",
                                                             urls=("https://r1.invalid/x.pdf",)))]
        for position, (lesson, number, kind, title, spec) in enumerate(parts):
            catalog.upsert_resource(source="t", source_id=f"part{position}", kind=kind,
                                    title=title, parent_id=package, lesson=lesson,
                                    lesson_no=number, position=position, files=[spec],
                                    **taxonomy)
        catalog.upsert_resource(source="t", source_id="cn", kind="textbook",
                                title="义务教育教科书·语文四年级上册", stage="小学", grade="四年级",
                                subject="语文")
    return {"book": book, "package": package, "video": video, "pdf": pdf}


def text(response) -> str:
    return response.get_data(as_text=True)


def test_home_has_tiles_by_stage_grade_and_subject(client, library):
    page = text(client.get("/"))
    assert "小学" in page
    assert 'href="/browse?stage=%E5%B0%8F%E5%AD%A6&amp;grade=%E4%B8%89%E5%B9%B4%E7%BA%A7"' in page
    assert page.index("三年级") < page.index("四年级")
    assert "数学" in page and "语文" in page


def test_browse_down_the_taxonomy_to_a_lesson(client, library):
    page = text(client.get("/browse?stage=小学&grade=三年级"))
    assert "请选择学科" in page and "数学" in page
    assert "几分之一" in page and "语文四年级" not in page
    page = text(client.get("/browse?stage=小学&grade=三年级&subject=数学"))
    assert "请选择版本" in page and "人教版" in page
    page = text(client.get(f"/r/{library['package']}"))
    assert page.index("第一课时") < page.index("第二课时")
    assert '<video class="player" controls preload="metadata" playsinline' in page
    assert f'src="/content/{library["video"]}"' in page
    assert "把蛋糕平均分成4份" in page and "<details" in page and "五分之一" in page
    assert "还没有下载到本校服务器" in page  # the remote task sheet
    assert "第八单元 分数的初步认识 › 1. 几分之一" in page


def test_textbook_page_shows_the_pdf_in_the_page_with_a_plain_link(client, library):
    page = text(client.get(f"/r/{library['book']}"))
    assert f'<figure class="pdf-view" tabindex="0" data-src="/content/{library["pdf"]}"' in page
    assert f'<a class="pdf-fallback" href="/content/{library["pdf"]}">' in page
    assert "js/pdfview.js" in page and "css/pdfview.css" in page


def test_search_page(client, library):
    page = text(client.get("/search?q=数学"))
    assert "“数学”的搜索结果：1 个" in page and "数学三年级上册" in page
    page = text(client.get("/search?q=分数"))
    assert "几分之一" in page  # found through its chapter path
    page = text(client.get("/search?q=物理"))
    assert "没有找到相关资源" in page


def test_english_is_available_and_remembered(client, library):
    page = text(client.get("/?lang=en"))
    assert 'lang="en"' in page and "Search" in page and "Primary" in page
    page = text(client.get("/"))  # the cookie keeps the choice
    assert 'lang="en"' in page
    page = text(client.get("/?lang=zh-CN"))
    assert 'lang="zh-CN"' in page and "搜索" in page


def test_every_message_has_both_languages():
    from kiosk.i18n import MESSAGES

    for key, (zh, en) in MESSAGES.items():
        assert zh and en, key
        assert set(re.findall(r"{(\w+)}", zh)) == set(re.findall(r"{(\w+)}", en)), key


def test_pages_carry_a_strict_csp_and_load_nothing_from_the_internet(client, library):
    response = client.get(f"/r/{library['package']}")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r"(src|href)=\"(https?:)?//", text(response))


def test_api_lists_files_with_content_urls_and_cached_state(client, library):
    item = client.get(f"/api/resources/{library['package']}").get_json()
    assert [lesson["lesson"] for lesson in item["lessons"]] == ["第一课时", "第二课时"]
    video = item["lessons"][0]["parts"][0]["files"][0]
    assert video["url"] == f"/content/{library['video']}" and video["cached"] is True
    remote = item["lessons"][1]["parts"][0]["files"][0]
    assert remote["url"] is None and remote["cached"] is False and remote["state"] == "remote"
    assert "urls" not in remote  # upstream addresses stay private
    listing = client.get("/api/resources?stage=小学&grade=三年级&subject=数学").get_json()
    assert listing["total"] == 2
    assert {r["title"] for r in listing["resources"]} == {"几分之一", "义务教育教科书·数学三年级上册"}
    assert client.get("/api/resources?q=语文").get_json()["total"] == 1
