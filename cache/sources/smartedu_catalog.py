"""Catalogue sync from the national platform: e-textbooks and 课程教学 lesson packages.

``shuqiao catalog update`` calls :func:`update`. It only writes the catalogue (resources,
their files as ``remote`` with mirror URLs, size and MD5, and ``resource_tags``); it never
touches the fetch queue.

E-textbooks (电子教材, smartedu-upstream.md §2): version file → parts (book list) → per
book detail (its ``ti_items``: the source PDF) → a ``textbook`` resource with the PDF and the
cover; bundles (``thematic_course``) get their child books as parts; English and other
language books get their listening audio as parts.

课程教学 (§4): course-book version file → parts (2,400 course books) → per course book:
chapter tree, lesson list, and for each lesson package its detail (sub-resources with
``ti_items``) → a top-level ``lesson_package`` resource (taxonomy, chapter path, teaching
order in ``position``) whose parts are the 微课视频, 课件, 教学设计, 学习任务单 and 课后练习,
grouped by 课时 (``lesson``, ``lesson_no``).

Incremental: the ``sources`` row ``smartedu`` keeps each module's ``module_version``; when it
has not changed, a sync fetches the two version files and nothing else. When it has, books
and course books are re-fetched only when their ``update_time`` differs from what we stored
(course books' stamps are kept in the same row under ``course_books``), and lessons only
when theirs does. A module's version is recorded only after a sync that met no transient
error, so an interrupted sync is finished by the next one (cheaply: what was written is
skipped by its stamp).

Memory: parts are streamed element by element; details are fetched by a few threads in a
bounded window; writes go in short transactions (one per batch of books, one per course
book), so the kiosk and fetch workers are never blocked for long.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..catalog import Catalog, FileSpec, now_iso, resource_id_for
from . import smartedu_model as model
from .smartedu import NAME, HostMap
from .smartedu_json import JsonClient, UpstreamUnavailable

log = logging.getLogger("shuqiao.smartedu.catalog")

S_FILE = "https://s-file-1.ykt.cbern.com.cn"
TEXTBOOK_VERSION = S_FILE + "/zxx/ndrs/resources/tch_material/version/data_version.json"
TEXTBOOK_TAGS = S_FILE + "/zxx/ndrs/tags/tch_material_tag.json"
TEXTBOOK_DETAILS = (S_FILE + "/zxx/ndrv2/resources/tch_material/details/{id}.json",
                    S_FILE + "/zxx/ndrs/resources/tch_material/details/{id}.json")
SPECIAL_DETAILS = S_FILE + "/zxx/ndrs/special_edu/resources/details/{id}.json"
BUNDLE_LIST = S_FILE + "/zxx/ndrs/special_edu/thematic_course/{id}/resources/list.json"
RELATION_AUDIOS = S_FILE + "/zxx/ndrs/resources/{id}/relation_audios.json"
COURSE_VERSION = S_FILE + "/zxx/ndrs/national_lesson/teachingmaterials/version/data_version.json"
COURSE_TREE = S_FILE + "/zxx/ndrv2/national_lesson/trees/{id}.json"
COURSE_LESSON_PARTS = S_FILE + "/zxx/ndrs/national_lesson/teachingmaterials/{id}/resources/parts.json"
COURSE_LESSON_PART = S_FILE + "/zxx/ndrs/national_lesson/teachingmaterials/{id}/resources/part_100.json"
LESSON_DETAILS = (S_FILE + "/zxx/ndrv2/national_lesson/resources/details/{id}.json",
                  # 精品课 (elite_lesson) answer 403 above; this one has them (§4.1 step 5)
                  S_FILE + "/zxx/ndrv2/resources/{id}.json")
MODULES = ("tch_material", "national_lesson")
# Books whose listening audio is worth the extra request per book (§2.5).
AUDIO_SUBJECTS = ("英语", "日语", "俄语", "德语", "法语", "西班牙语")
WORKERS = 4
WINDOW = 16
TEXTBOOK_BATCH = 100


@dataclass
class ModuleReport:
    module: str
    module_version: Any = None
    unchanged: bool = False       # module_version was the one we had: nothing else fetched
    seen: int = 0                 # entries in the list
    written: int = 0              # resources (top level) written this time
    skipped: int = 0              # list entries unchanged by update_time
    lessons_unchanged: int = 0    # lessons of a changed course book that had not changed
    out_of_scope: int = 0
    unavailable: int = 0          # detail missing upstream (404/403 on every path)
    errors: list[str] = field(default_factory=list)   # transient: the next sync retries

    def line(self) -> str:
        if self.unchanged:
            return f"{self.module}: 未变化 / unchanged (module_version {self.module_version})"
        text = (f"{self.module}: {self.seen} 条 / entries, {self.written} 更新 / written, "
                f"{self.skipped} 未变 / unchanged")
        if self.out_of_scope:
            text += f", {self.out_of_scope} 不在范围 / out of scope"
        if self.unavailable:
            text += f", {self.unavailable} 无详情 / no detail upstream"
        if self.errors:
            text += f", {len(self.errors)} 出错 / errors (下次重试 / retried next time)"
        return text


def update(config, catalog: Catalog, echo: Callable[[str], None] = print,
           modules: Iterable[str] | None = None, client: JsonClient | None = None) -> dict:
    """Sync the platform's catalogue into ``catalog``; returns a summary dict.

    :param modules: ``tch_material`` and/or ``national_lesson`` (default: the
        ``smartedu_modules`` setting).
    """
    chosen = list(modules or _configured_modules(config))
    own_client = client is None
    client = client or JsonClient(HostMap(getattr(config, "smartedu_hosts", {}) or {}))
    sync = CatalogSync(catalog, client, echo,
                       rendition=int(str(getattr(config, "smartedu_video_rendition",
                                                 "720p")).rstrip("p")),
                       scope=parse_scope(getattr(config, "smartedu_course_scope", "")))
    started = time.monotonic()
    try:
        reports = sync.run(chosen)
    finally:
        if own_client:
            client.close()
    summary = {"modules": {r.module: r.__dict__ for r in reports},
               "requests": client.requests, "seconds": round(time.monotonic() - started, 2),
               "ok": not any(r.errors for r in reports)}
    echo(f"完成 / done: {client.requests} 次请求 / requests in {summary['seconds']} s")
    return summary


def run_update(config, echo: Callable[[str], None] = print) -> int:
    """``shuqiao catalog update [--source smartedu]``: sync, print progress and a summary,
    return the exit code (0 done; 1 something failed upstream and the next run retries)."""
    from .. import Cache

    cache = Cache(config.home)
    cache.home.mkdir(parents=True, exist_ok=True)
    cache.migrate()
    with cache.catalog() as catalog:
        summary = update(config, catalog, echo=echo)
        counts = catalog.counts()
    echo(f"资源目录 / catalogue: {counts['resources']} 个资源 / resources, "
         f"{counts['parts']} 个组成部分 / parts, {counts['files']} 个文件 / files")
    if not summary["ok"]:
        for module in summary["modules"].values():
            for error in module["errors"][:5]:
                echo(f"  {module['module']}: {error}")
    return 0 if summary["ok"] else 1


def _guarded(report: ModuleReport, upstream_id: str, db, write: Callable[[], Any]) -> Any:
    """Run one entry's writes in a savepoint. An entry whose JSON we cannot make sense of
    (a quirk nobody has seen yet) is rolled back and reported, and the sync goes on: one
    odd book must not keep thousands of others out of the catalogue. Returns ``write()``'s
    value, or None when it failed."""
    try:
        with db.atomic():
            return write()
    except Exception as error:  # noqa: BLE001 - reported, and the next sync retries it
        log.exception("smartedu entry %s could not be catalogued", upstream_id)
        report.errors.append(f"{upstream_id}: {type(error).__name__}: {error}")
        return None


def _configured_modules(config) -> list[str]:
    value = getattr(config, "smartedu_modules", "all") or "all"
    return list(MODULES) if value == "all" else [m for m in MODULES if m == value]


def parse_scope(text: str) -> list[set[str]]:
    """``smartedu_course_scope``: rules separated by ``;``, each a set of tag names that
    must all be on a course book (``小学 数学; 初中 语文 统编版``). Empty: everything."""
    return [set(rule.split()) for rule in (text or "").split(";") if rule.split()]


def in_scope(book: dict, scope: list[set[str]]) -> bool:
    if not scope:
        return True
    names = model.tag_names(book) | {model.title_of(book)}
    return any(rule <= names for rule in scope)


def bounded_map(executor: ThreadPoolExecutor, function: Callable, items: Iterable,
                window: int = WINDOW) -> Iterator[tuple[Any, Future]]:
    """Like ``executor.map`` in order, but only ``window`` items in flight: the list is
    never read far ahead of what has been written."""
    pending: deque[tuple[Any, Future]] = deque()
    for item in items:
        pending.append((item, executor.submit(function, item)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


class CatalogSync:
    def __init__(self, catalog: Catalog, client: JsonClient, echo: Callable[[str], None],
                 rendition: int = 720, scope: list[set[str]] | None = None):
        self.catalog = catalog
        self.db = catalog.db
        self.client = client
        self.echo = echo
        self.rendition = rendition
        self.scope = scope or []
        self.bookmarks = self._load_bookmarks()

    # ---------------------------------------------------------------- bookmarks

    def _load_bookmarks(self) -> dict:
        row = self.db.execute("SELECT module_versions FROM sources WHERE name = ?",
                              [NAME]).fetchone()
        if row is None:
            self.db.execute("INSERT INTO sources (name, kind) VALUES (?, ?)", [NAME, NAME])
            self.db.conn.commit()
            return {}
        try:
            return json.loads(row[0]) or {}
        except json.JSONDecodeError:
            return {}

    def _save_bookmarks(self) -> None:
        """Inside the caller's transaction when there is one."""
        with self.db.atomic():
            self.db.execute("UPDATE sources SET module_versions = ?, last_sync = ? WHERE name = ?",
                            [json.dumps(self.bookmarks, ensure_ascii=False), now_iso(), NAME])

    def run(self, modules: list[str]) -> list[ModuleReport]:
        reports = []
        for module in modules:
            if module == "tch_material":
                reports.append(self.sync_textbooks())
            elif module == "national_lesson":
                reports.append(self.sync_courses())
            else:
                raise ValueError(f"unknown module {module!r}")
            self.echo(reports[-1].line())
        return reports

    def _version(self, url: str, report: ModuleReport) -> list[str] | None:
        """The part URLs when the module changed since the last sync, else None."""
        try:
            version = self.client.get(url)
        except UpstreamUnavailable as error:
            report.errors.append(f"version file: {error}")
            return None
        if not isinstance(version, dict):
            report.errors.append("version file missing or not an object")
            return None
        report.module_version = version.get("module_version")
        if report.module_version is not None and \
                self.bookmarks.get(report.module) == report.module_version:
            report.unchanged = True
            return None
        return model.version_urls(version)

    def _parts(self, urls: list[str], report: ModuleReport) -> Iterator[dict]:
        for number, url in enumerate(urls, start=1):
            self.echo(f"{report.module}: 读取第 {number}/{len(urls)} 部分 / reading part "
                      f"{number} of {len(urls)}")
            try:
                for entry in self.client.iter_array(url, missing_ok=False):
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        report.seen += 1
                        yield entry
            except UpstreamUnavailable as error:
                report.errors.append(f"{url}: {error}")

    def _stamps(self, kind: str) -> dict[str, str]:
        """source_id → upstream_updated of our top-level resources of ``kind`` that hold
        something to fetch (a resource written without files is fetched again)."""
        return dict(self.db.execute(
            "SELECT r.source_id, r.upstream_updated FROM resources r "
            "WHERE r.source = ? AND r.kind = ? AND r.parent_id IS NULL AND ("
            " EXISTS (SELECT 1 FROM files f WHERE f.resource_id = r.id AND f.role != 'cover')"
            " OR EXISTS (SELECT 1 FROM resources p JOIN files f ON f.resource_id = p.id"
            "            WHERE p.parent_id = r.id AND f.role != 'cover'))",
            [NAME, kind]).fetchall())

    # ------------------------------------------------------------- e-textbooks

    def sync_textbooks(self) -> ModuleReport:
        report = ModuleReport("tch_material")
        urls = self._version(TEXTBOOK_VERSION, report)
        if urls is None:
            return report
        try:
            tags = model.TagIndex.from_tree(self.client.get(TEXTBOOK_TAGS) or {})
        except UpstreamUnavailable as error:
            log.warning("tag tree unavailable (%s); using the books' own tags", error)
            tags = model.TagIndex()
        stamps = self._stamps("textbook")

        def wanted() -> Iterator[dict]:
            for entry in self._parts(urls, report):
                compound = model.as_dict(entry.get("resource_custom_properties")).get(
                    "compound_node")
                if compound == "sub":
                    continue  # a bundle's child: written under its bundle (list.json)
                if stamps.get(entry["id"]) == str(entry.get("update_time") or "") != "":
                    report.skipped += 1
                    continue
                yield entry

        batch: list[tuple[dict, dict]] = []
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="smartedu-sync") as executor:
            for entry, future in bounded_map(executor, self._textbook_detail, wanted()):
                try:
                    fetched = future.result()
                except UpstreamUnavailable as error:
                    report.errors.append(f"{entry['id']}: {error}")
                    continue
                if fetched is None:
                    report.unavailable += 1
                    continue
                batch.append((entry, fetched))
                if len(batch) >= TEXTBOOK_BATCH:
                    self._write_textbooks(batch, tags, report)
                    batch = []
            self._write_textbooks(batch, tags, report)
        if not report.errors:
            self.bookmarks["tch_material"] = report.module_version
            self._save_bookmarks()
        return report

    def _textbook_detail(self, entry: dict) -> dict | None:
        """Runs in a worker: the detail, bundle children and audio of one book."""
        book_id = entry["id"]
        bundle = (entry.get("resource_type_code") == "thematic_course" or model.as_dict(
            entry.get("resource_custom_properties")).get("compound_node") == "parent")
        if bundle:
            children = self.client.get(BUNDLE_LIST.format(id=book_id))
            children = [c for c in model.iter_packages(model.as_list(children))]
            for index, child in enumerate(children):
                if not model.as_list(child.get("ti_items")):
                    children[index] = self.client.get(
                        SPECIAL_DETAILS.format(id=child["id"])) or child
            if not children:
                return None
            return {"detail": entry, "children": children, "audios": []}
        detail = None
        for pattern in TEXTBOOK_DETAILS + (SPECIAL_DETAILS,):
            detail = self.client.get(pattern.format(id=book_id))
            if isinstance(detail, dict) and model.source_pdf_item(
                    [model.as_dict(i) for i in model.as_list(detail.get("ti_items"))]):
                break
            detail = None
        if detail is None:
            return None
        audios = []
        subject = model.taxonomy(model.entry_tags(entry)).get("subject", "")
        if any(word in subject for word in AUDIO_SUBJECTS):
            audios = list(model.iter_packages(model.as_list(
                self.client.get(RELATION_AUDIOS.format(id=book_id)))))
        return {"detail": detail, "children": [], "audios": audios}

    def _write_textbooks(self, batch: list[tuple[dict, dict]], tags: model.TagIndex,
                         report: ModuleReport) -> None:
        if not batch:
            return
        with self.db.atomic():
            for entry, fetched in batch:
                if _guarded(report, entry["id"], self.db,
                            lambda: self._write_textbook(entry, fetched, tags)):
                    report.written += 1
        if report.written % 500 < len(batch):
            self.echo(f"tch_material: {report.written} 本已写入 / books written")

    def _write_textbook(self, entry: dict, fetched: dict, tags: model.TagIndex) -> str:
        detail = fetched["detail"]
        book_tags = model.entry_tags(entry, tags)
        columns = model.taxonomy(book_tags)
        title = model.title_of(entry) or model.title_of(detail) or entry["id"]
        files = [] if fetched["children"] else model.textbook_files(detail)
        if fetched["children"]:
            cover = model.cover_spec(entry)
            files = [cover] if cover else []
        rid = self.catalog.upsert_resource(
            source=NAME, source_id=entry["id"], kind="textbook", title=title,
            description=model.text_of(entry.get("description"))
            or model.text_of(entry.get("global_description")),
            files=files, tags=book_tags, extra=model.textbook_extra(entry, detail),
            upstream_updated=str(entry.get("update_time") or ""), **columns)
        parts: list[tuple[str, str, list[FileSpec], dict]] = []
        for child in fetched["children"]:
            parts.append((child["id"], model.title_of(child) or title,
                          model.textbook_files(child), {"kind": "textbook"}))
        for audio in fetched["audios"]:
            items = [model.as_dict(i) for i in model.as_list(audio.get("ti_items"))]
            parts.append((audio["id"], model.title_of(audio) or "音频",
                          model.audio_specs(items), {"kind": "audio"}))
        self._write_parts(rid, entry["id"], parts, columns)
        return rid

    def _write_parts(self, parent_rid: str, parent_source_id: str,
                     parts: list[tuple[str, str, list[FileSpec], dict]], columns: dict,
                     chapter: list[str] = (), chapter_ids: list[str] = ()) -> None:
        keep = []
        for position, (part_id, title, files, options) in enumerate(parts):
            if not files:
                continue
            source_id = f"{parent_source_id}/{part_id}"
            keep.append(resource_id_for(NAME, source_id))
            self.catalog.upsert_resource(
                source=NAME, source_id=source_id, kind=options["kind"], title=title,
                parent_id=parent_rid, files=files, position=position,
                lesson=options.get("lesson", ""), lesson_no=options.get("lesson_no", 0),
                chapter=chapter, chapter_ids=chapter_ids, extra=options.get("extra"),
                upstream_updated=options.get("updated", ""), **columns)
        marks = ", ".join("?" for _ in keep) or "''"
        # Parts the platform no longer lists go (their queue rows with them).
        self.db.execute(f"DELETE FROM resources WHERE parent_id = ? AND id NOT IN ({marks})",
                        [parent_rid, *keep])

    # ---------------------------------------------------------- 课程教学 lessons

    def sync_courses(self) -> ModuleReport:
        report = ModuleReport("national_lesson")
        urls = self._version(COURSE_VERSION, report)
        if urls is None:
            return report
        book_stamps: dict[str, str] = dict(self.bookmarks.get("course_books") or {})
        lesson_stamps = self._stamps("lesson_package")

        def wanted() -> Iterator[dict]:
            for book in self._parts(urls, report):
                if not in_scope(book, self.scope):
                    report.out_of_scope += 1
                    continue
                if book_stamps.get(book["id"]) == str(book.get("update_time") or "") != "":
                    report.skipped += 1
                    continue
                yield book

        def fetch(book: dict) -> dict:
            return self._course_book(book, lesson_stamps)

        done = 0
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="smartedu-sync") as executor:
            for book, future in bounded_map(executor, fetch, wanted(), window=WORKERS * 2):
                try:
                    fetched = future.result()
                except UpstreamUnavailable as error:
                    report.errors.append(f"{book['id']}: {error}")
                    continue
                with self.db.atomic():
                    complete = self._write_course_book(book, fetched, report)
                    if complete:
                        book_stamps[book["id"]] = str(book.get("update_time") or "")
                        self.bookmarks["course_books"] = book_stamps
                    done += 1
                    if done % 50 == 0:
                        self._save_bookmarks()
                if done % 200 == 0:
                    self.echo(f"national_lesson: {done} 本课本已处理 / course books done, "
                              f"{report.written} 课 / lessons written")
        self.bookmarks["course_books"] = book_stamps
        if not report.errors:
            self.bookmarks["national_lesson"] = report.module_version
        self._save_bookmarks()
        return report

    def _course_book(self, book: dict, lesson_stamps: dict[str, str]) -> dict:
        """Runs in a worker: tree, lesson list and the details of changed lessons."""
        tree = model.ChapterTree.parse(self.client.get(COURSE_TREE.format(id=book["id"])) or [])
        part_urls = self.client.get(COURSE_LESSON_PARTS.format(id=book["id"]))
        if isinstance(part_urls, dict):
            part_urls = model.version_urls(part_urls)
        elif isinstance(part_urls, str):
            part_urls = model.version_urls({"urls": part_urls})
        urls = [u for u in model.as_list(part_urls) if isinstance(u, str)] or \
            [COURSE_LESSON_PART.format(id=book["id"])]
        lessons: list[dict] = []
        seen: set[str] = set()
        for url in urls:
            for entry in model.iter_packages(self.client.iter_array(url)):
                if entry["id"] not in seen:
                    seen.add(entry["id"])
                    lessons.append(entry)
        details: dict[str, dict | None] = {}
        errors = []
        for entry in lessons:
            if lesson_stamps.get(entry["id"]) == str(entry.get("update_time") or "") != "":
                continue
            try:
                details[entry["id"]] = self._lesson_detail(entry["id"])
            except UpstreamUnavailable as error:
                errors.append(f"{entry['id']}: {error}")
        return {"tree": tree, "lessons": lessons, "details": details, "errors": errors}

    def _lesson_detail(self, lesson_id: str) -> dict | None:
        for pattern in LESSON_DETAILS:
            detail = self.client.get(pattern.format(id=lesson_id))
            if isinstance(detail, dict):
                return detail
        return None

    def _write_course_book(self, book: dict, fetched: dict, report: ModuleReport) -> bool:
        """Write one course book's lessons (inside the caller's transaction); True when
        every lesson was dealt with (the book's stamp may then be recorded)."""
        tree: model.ChapterTree = fetched["tree"]
        book_tags = model.entry_tags(book)
        errors_before = len(report.errors)
        ordered = sorted(enumerate(fetched["lessons"]), key=lambda pair: (
            tree.position(tree.path(pair[1])[1]), pair[0]))
        for position, (_index, entry) in enumerate(ordered):
            titles, ids = tree.path(entry)
            if entry["id"] not in fetched["details"]:
                # Unchanged lesson: only its place in the (maybe changed) tree is updated.
                self._move_lesson(entry["id"], position, titles, ids)
                report.lessons_unchanged += 1
                continue
            detail = fetched["details"][entry["id"]]
            if detail is None:
                report.unavailable += 1
                continue
            written = _guarded(report, entry["id"], self.db, lambda: self._write_lesson(
                book, book_tags, entry, detail, position, titles, ids))
            if written:
                report.written += 1
            elif written is False:
                report.unavailable += 1
        report.errors.extend(fetched["errors"])
        return len(report.errors) == errors_before

    def _move_lesson(self, lesson_id: str, position: int, titles: list[str],
                     ids: list[str]) -> None:
        rid = resource_id_for(NAME, lesson_id)
        chapter = json.dumps(titles, ensure_ascii=False)
        self.db.execute("UPDATE resources SET position = ?, chapter = ?, chapter_ids = ? "
                        "WHERE id = ?", [position, chapter, json.dumps(ids), rid])
        self.db.execute("UPDATE resources SET chapter = ?, chapter_ids = ? WHERE parent_id = ?",
                        [chapter, json.dumps(ids), rid])

    def _write_lesson(self, book: dict, book_tags: list, entry: dict, detail: dict,
                      position: int, titles: list[str], ids: list[str]) -> bool:
        """One lesson package and its parts; False when it has nothing to fetch."""
        _key, subs = model.relations_of(detail)
        lessons = model.lesson_of_parts(detail)
        parts = []
        for index, sub in enumerate(subs):
            kind = model.sub_kind(sub)
            files = model.part_files(sub, kind, self.rendition)
            lesson, lesson_no = lessons[index]
            parts.append((str(sub.get("id") or index), model.KIND_TITLES.get(kind)
                          or model.title_of(sub) or kind, files,
                          {"kind": kind, "lesson": lesson, "lesson_no": lesson_no,
                           "extra": model.part_extra(sub),
                           "updated": str(sub.get("update_time") or "")}))
        if not any(files for _, _, files, _ in parts):
            return False
        # The package's own tags win (they name the week, the 课时 type); the course book
        # fills in what they lack.
        tags = model.entry_tags(detail) or model.entry_tags(entry)
        known = {(d, t) for d, t, _ in tags}
        tags += [tag for tag in book_tags if (tag[0], tag[1]) not in known]
        columns = model.taxonomy(tags)
        cover = model.cover_spec(detail) or model.cover_spec(entry)
        # Parts sorted by 课时, then their order in the package.
        parts.sort(key=lambda part: part[3]["lesson_no"])
        rid = self.catalog.upsert_resource(
            source=NAME, source_id=entry["id"], kind="lesson_package",
            title=model.title_of(detail) or model.title_of(entry) or entry["id"],
            description=model.package_description(detail), files=[cover] if cover else [],
            tags=tags, chapter=titles, chapter_ids=ids, position=position,
            extra=model.package_extra(detail, book),
            upstream_updated=str(entry.get("update_time") or detail.get("update_time") or ""),
            **columns)
        self._write_parts(rid, entry["id"], parts, columns, titles, ids)
        return True
