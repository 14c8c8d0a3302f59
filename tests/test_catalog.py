"""The catalogue: the national taxonomy, lesson packages per 课时, Chinese search, facets.

Search is tried on the real titles captured from the platform (../shared/data), as
DESIGN.md asks; those tests skip cleanly where that folder is absent.
"""

from __future__ import annotations

import json
import time

import pytest

from cache.catalog import CatalogError, FileSpec
from cache.search import index_text, match_query
from conftest import CAPTURED

DIMENSIONS = {"zxxxd": "stage", "zxxnj": "grade", "zxxxk": "subject", "zxxbb": "edition",
              "zxxcc": "volume"}


@pytest.fixture
def catalog(ctx):
    with ctx.cache.catalog() as catalog:
        yield catalog


def add(catalog, key, title, **fields):
    return catalog.upsert_resource(source="test", source_id=key, kind=fields.pop("kind", "textbook"),
                                   title=title, **fields)


def test_segmentation_makes_chinese_searchable():
    assert index_text("分数的初步认识（第一课时）") == "分 数 的 初 步 认 识 _ 第 一 课 时"
    assert index_text("Unit 3 Ｍｙ Friends 英语") == "unit _ 3 _ my _ friends _ 英 语"
    assert index_text("教科书·法语") == "教 科 书 _ 法 语"
    assert match_query("分数") == '"分 数"'
    assert match_query("数 math") == '"数" AND "math"*'
    assert match_query('"; DROP TABLE resources; --') == '"drop"* AND "table"* AND "resources"*'
    assert match_query("a_b") == '"a"* AND "b"*'
    assert match_query("（）！") is None


@pytest.mark.parametrize("query, expected", [
    ("数", ["数学三年级上册", "分数的初步认识"]),
    ("数学", ["数学三年级上册"]),
    ("分数", ["分数的初步认识"]),
    ("认识 分数", ["分数的初步认识"]),  # each run must match, in any order
    ("数学 分数", []),                 # …and all of them must
    ("初步认识", ["分数的初步认识"]),
    ("单元", ["分数的初步认识"]),        # chapter path is indexed too
    ("english", ["English Book 3"]),
    ("eng", ["English Book 3"]),       # prefix for latin words
    ("语文", []),
])
def test_search(catalog, query, expected):
    add(catalog, "m", "数学三年级上册", stage="小学", grade="三年级", subject="数学")
    add(catalog, "f", "分数的初步认识", kind="lesson_package", chapter=["第八单元", "几分之一"])
    add(catalog, "e", "English Book 3", subject="英语")
    results, total = catalog.query(q=query)
    assert sorted(r["title"] for r in results) == sorted(expected)
    assert total == len(results)


def test_title_matches_rank_above_chapter_matches(catalog):
    add(catalog, "a", "几分之一练习", chapter=["第八单元 分数"])
    add(catalog, "b", "分数的初步认识", chapter=["第八单元"])
    results, _ = catalog.query(q="分数")
    assert [r["title"] for r in results] == ["分数的初步认识", "几分之一练习"]


def test_lesson_package_parts_are_grouped_per_lesson(catalog):
    pid = add(catalog, "pkg", "几分之一", kind="lesson_package", subject="数学")
    for i, (lesson, kind) in enumerate([("第一课时", "video"), ("第一课时", "task_sheet"),
                                        ("第二课时", "video")]):
        catalog.upsert_resource(source="test", source_id=f"part{i}", kind=kind, title=kind,
                                parent_id=pid, lesson=lesson, lesson_no=1 + (lesson == "第二课时"),
                                position=i, files=[FileSpec(role="video", mime="video/mp4",
                                                            urls=("https://example.invalid/x",))])
    item = catalog.get(pid)
    assert [lesson["lesson"] for lesson in item["lessons"]] == ["第一课时", "第二课时"]
    assert [p["kind"] for p in item["lessons"][0]["parts"]] == ["video", "task_sheet"]
    assert item["ready"] is False  # parts are remote
    assert item["lessons"][0]["parts"][0]["files"][0]["content_url"] is None
    # Parts are not search results on their own: the package is.
    results, _ = catalog.query(q="video")
    assert results == []
    assert catalog.counts()["parts"] == 3


def test_upsert_is_idempotent_and_keeps_the_id(catalog):
    first = add(catalog, "k", "旧标题", stage="小学")
    second = add(catalog, "k", "新标题", stage="小学")
    assert first == second
    assert catalog.counts()["resources"] == 1
    assert [r["title"] for r in catalog.query(q="新标题")[0]] == ["新标题"]
    assert catalog.query(q="旧标题")[0] == []


def test_bad_input(catalog):
    with pytest.raises(CatalogError, match="unknown kind"):
        add(catalog, "x", "t", kind="poster")
    with pytest.raises(CatalogError, match="title is required"):
        add(catalog, "x", "   ")


def test_facets_are_in_curriculum_order(catalog):
    for i, grade in enumerate(["十年级特别版", "三年级", "一年级", "九年级", "二年级"]):
        add(catalog, f"g{i}", f"书{i}", stage="小学", grade=grade)
    assert [f["value"] for f in catalog.facet("grade", stage="小学")] == [
        "一年级", "二年级", "三年级", "九年级", "十年级特别版"]


def _load_captured(catalog, path):
    entries = json.loads(path.read_text(encoding="utf-8"))
    for entry in entries:
        fields = {}
        for tag in entry.get("tag_list") or []:
            level = DIMENSIONS.get(tag["tag_dimension_id"])
            if level and level not in fields:
                fields[level] = tag["tag_name"]
        catalog.upsert_resource(source="smartedu", source_id=entry["id"], kind="textbook",
                                title=entry["title"], **fields)
    return len(entries)


@pytest.mark.skipif(not CAPTURED.is_dir(), reason="../shared/data/smartedu-captured is absent")
def test_search_and_browse_the_real_captured_catalogue(catalog):
    loaded = sum(_load_captured(catalog, CAPTURED / "syncClassroom" / f"part_{n}.json")
                 for n in (100, 101, 102))
    loaded += _load_captured(catalog, CAPTURED / "tchMaterial" / "part_103.json")
    assert loaded == 2400 + 228
    counts = catalog.counts()
    assert counts["resources"] == loaded
    started = time.perf_counter()
    for query, needle in [("数学", "数学"), ("数", "数"), ("书法", "书法"), ("英语", "英语"),
                          ("足球", "足球"), ("道德与法治", "道德与法治")]:
        results, total = catalog.query(q=query, limit=10)
        assert total > 0, query
        assert all(needle in r["title"] for r in results), (query, [r["title"] for r in results])
    elapsed = time.perf_counter() - started
    print(f"6 searches over {loaded} real titles: {elapsed * 1000:.1f} ms")
    stages = [f["value"] for f in catalog.facet("stage")]
    assert stages[:3] == ["小学", "初中", "高中"]
    grades = [f["value"] for f in catalog.facet("grade", stage="小学")]
    assert grades[:6] == ["一年级", "二年级", "三年级", "四年级", "五年级", "六年级"]
    results, total = catalog.query(stage="小学", grade="三年级", subject="数学")
    assert total > 0 and all(r["grade"] == "三年级" for r in results)
    # The query plans use the indexes, never a scan of all resources.
    plan = " ".join(str(row) for row in catalog.db.execute(
        "EXPLAIN QUERY PLAN SELECT grade, count(*) FROM resources WHERE parent_id IS NULL "
        "AND grade != '' AND stage = ? GROUP BY grade", ["小学"]).fetchall())
    assert "USING INDEX resources_taxonomy" in plan or "USING COVERING INDEX" in plan, plan


def test_optional_files_do_not_keep_a_resource_from_ready(catalog):
    rid = catalog.upsert_resource(
        source="t", source_id="book", kind="textbook", title="数学",
        files=[FileSpec(role="source", mime="application/pdf", size=10, sha256="a" * 64,
                        state="cached"),
               FileSpec(role="cover", mime="image/jpeg", urls=("https://r1-ndr.invalid/c.jpg",),
                        extra={"optional": True})])
    assert catalog.get(rid)["ready"] is True
    assert catalog.query(q="数学")[0][0]["ready"] is True
    catalog.upsert_resource(
        source="t", source_id="book", kind="textbook", title="数学",
        files=[FileSpec(role="source", mime="application/pdf", size=20,  # new content upstream
                        urls=("https://x.invalid/a.pdf",)),
               FileSpec(role="cover", mime="image/jpeg", sha256="b" * 64, state="cached")])
    assert catalog.get(rid)["ready"] is False
