"""The national platform's catalogue JSON → our model (pure functions, no I/O).

Everything here follows ``shared/reference/smartedu-upstream.md`` (§ numbers below) and
tolerates the quirks seen in real captured JSON: ``urls`` as a comma string or an array,
``global_title`` as an object, a string or missing, misspelt keys (``teachmeterial_ids``,
``prom_resouce_type``), sub-resources whose ``title`` is only the kind name, missing
fields anywhere, and several tags of one dimension on one book (special education books
carry both 特殊教育 and 小学 as 学段).

:mod:`.smartedu_catalog` does the fetching and writing; this module only reads dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from ..catalog import FileSpec

# §2.3: dimension id → our column.
DIMENSIONS = {"zxxxd": "stage", "zxxnj": "grade", "zxxxk": "subject", "zxxbb": "edition",
              "zxxcc": "volume"}
PRIVATE_BUCKET = "https://r1-ndr-private.ykt.cbern.com.cn"
_CS_PATH = "cs_path:${ref-path}"

# §4.3: sub-resource kinds. Codes first; older fixtures use generic codes, so the kind
# name (alias_name, the bklx tag, or the title) decides then.
KIND_BY_CODE = {
    "micro_lesson_video": "video", "assets_video": "video", "coursewares": "courseware",
    "lesson_plandesign": "lesson_plan", "learning_task": "task_sheet",
    "after_class_exercise": "exercise", "assets_audio": "audio",
}
KIND_BY_NAME = (
    ("视频", "video"), ("微课", "video"), ("课件", "courseware"), ("教学设计", "lesson_plan"),
    ("任务单", "task_sheet"), ("练习", "exercise"), ("作业", "exercise"), ("音频", "audio"),
)
KIND_TITLES = {"video": "视频课程", "courseware": "课件", "lesson_plan": "教学设计",
               "task_sheet": "学习任务单", "exercise": "课后练习", "audio": "音频",
               "document": "文档"}
PACKAGE_CODES = ("national_lesson", "elite_lesson")
RELATION_KEYS = ("national_course_resource", "course_resource")

MIME_BY_LC_FORMAT = {
    "application/pdf": "application/pdf", "video/m3u8": "application/vnd.apple.mpegurl",
    "image/jpg": "image/jpeg", "image/jpeg": "image/jpeg", "image/png": "image/png",
    "document/json": "application/json", "audio/mp3": "audio/mpeg", "audio/mpeg": "audio/mpeg",
}
MIME_BY_FORMAT = {
    "pdf": "application/pdf", "m3u8": "application/vnd.apple.mpegurl", "jpg": "image/jpeg",
    "jpeg": "image/jpeg", "png": "image/png", "mp3": "audio/mpeg", "m4a": "audio/mp4",
    "ogg": "audio/ogg", "wav": "audio/wav", "mp4": "video/mp4", "json": "application/json",
    "txt": "text/plain",
}
# Renditions by ti_file_flag (§4.4); href and href-m3u8 are the 1080p playlist.
RENDITION_FLAGS = {"href-360p-m3u8": 360, "href-480p-m3u8": 480, "href-720p-m3u8": 720,
                   "href-m3u8": 1080, "href": 1080}
_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


# ------------------------------------------------------------------------ small readers

def version_urls(version: dict) -> list[str]:
    """Part URLs of a version file: a comma string (tch_material) or an array (§2.1)."""
    urls = version.get("urls") or []
    if isinstance(urls, str):
        urls = urls.split(",")
    return [u.strip() for u in urls if isinstance(u, str) and u.strip()]


def text_of(value: Any) -> str:
    """``global_title``-like values: ``{"zh-CN": …}``, a plain string, or nothing."""
    if isinstance(value, dict):
        for key in ("zh-CN", "zh_CN", "zh"):
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key].strip()
        for item in value.values():
            if isinstance(item, str) and item.strip():
                return item.strip()
        return ""
    return value.strip() if isinstance(value, str) else ""


def title_of(entry: dict) -> str:
    return text_of(entry.get("global_title")) or text_of(entry.get("title"))


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_int(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 2 ** 63 else None


def teachingmaterial_ids(entry: dict) -> list[str]:
    ids = as_list(entry.get("teachmeterial_ids")) or as_list(entry.get("teachingmaterial_ids"))
    if not ids and isinstance(entry.get("teachingmaterial_id"), str):
        ids = [entry["teachingmaterial_id"]]
    return [i for i in ids if isinstance(i, str)]


def prom_type(entry: dict) -> str:
    props = as_dict(entry.get("custom_properties"))
    return str(props.get("prom_resouce_type") or props.get("prom_resource_type") or "")


def chinese_number(text: str) -> int:
    """第一课时 → 1, 第十二课时 → 12, 第3课时 → 3; 0 when there is no number."""
    match = re.search(r"第([0-9]+|[一二三四五六七八九十]+)", text or "")
    if not match:
        return 0
    token = match.group(1)
    if token.isdigit():
        return int(token)
    if "十" in token:
        tens, _, ones = token.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + _CN_DIGITS.get(ones, 0)
    return _CN_DIGITS.get(token, 0)


# --------------------------------------------------------------------------- taxonomy

@dataclass
class TagIndex:
    """tag id → (name, dimension), from a tag tree (§2.3); order does not matter."""

    tags: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_tree(cls, tree: Any) -> "TagIndex":
        index = cls()
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            if isinstance(node.get("tag_id"), str):
                index.tags[node["tag_id"]] = (str(node.get("tag_name") or ""),
                                              str(node.get("tag_dimension_id") or ""))
            for level in as_list(node.get("hierarchies")):
                stack.extend(as_list(as_dict(level).get("children")))
        return index


def entry_tags(entry: dict, index: TagIndex | None = None) -> list[tuple[str, str, str]]:
    """(dimension, tag id, name) of an entry, top of the tag tree first.

    ``tag_list`` is the source; ``tag_paths`` gives the tree order (so when a book has two
    学段 tags, 特殊教育 above 小学, the one nearer the root wins) and, with the tag tree,
    fills in tags the list lacks.
    """
    tags: dict[str, tuple[str, str, str]] = {}
    for tag in as_list(entry.get("tag_list")):
        tag = as_dict(tag)
        dimension = str(tag.get("tag_dimension_id") or "")
        name = str(tag.get("tag_name") or "").strip()
        if dimension and name:
            tag_id = str(tag.get("tag_id") or name)
            tags.setdefault(tag_id, (dimension, tag_id, name))
    ordered: list[tuple[str, str, str]] = []
    paths = [p for p in as_list(entry.get("tag_paths")) if isinstance(p, str)]
    for path in paths[:1]:
        for tag_id in path.split("/"):
            if tag_id in tags:
                ordered.append(tags.pop(tag_id))
            elif index is not None and tag_id in index.tags:
                name, dimension = index.tags[tag_id]
                if name and dimension:
                    ordered.append((dimension, tag_id, name))
    ordered.extend(tags.values())
    return ordered


def taxonomy(tags: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """Our columns (stage, grade, subject, edition, volume) from ordered tags."""
    columns: dict[str, str] = {}
    for dimension, _tag_id, name in tags:
        column = DIMENSIONS.get(dimension)
        if column and column not in columns:
            columns[column] = name
    return columns


def tag_names(entry: dict) -> set[str]:
    return {str(as_dict(t).get("tag_name") or "") for t in as_list(entry.get("tag_list"))} - {""}


def tag_of(entry: dict, dimension: str) -> str:
    for tag in as_list(entry.get("tag_list")):
        tag = as_dict(tag)
        if tag.get("tag_dimension_id") == dimension and tag.get("tag_name"):
            return str(tag["tag_name"])
    return ""


# ------------------------------------------------------------------------------ files

def item_urls(item: dict) -> list[str]:
    """Mirror URLs of a ti_item: ``ti_storages``; ``ti_storage``'s ``cs_path`` expanded only
    when there are none (§2.4)."""
    urls = [u for u in as_list(item.get("ti_storages")) if isinstance(u, str) and u.strip()]
    if not urls:
        storage = item.get("ti_storage")
        if isinstance(storage, str) and storage.startswith(_CS_PATH):
            urls = [PRIVATE_BUCKET + storage[len(_CS_PATH):]]
        elif isinstance(storage, str) and storage.startswith("http"):
            urls = [storage]
    seen: set[str] = set()
    return [u.strip() for u in urls if not (u.strip() in seen or seen.add(u.strip()))]


def file_name(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def mime_of(item: dict, url: str = "") -> str:
    lc = str(item.get("lc_ti_format") or "").lower()
    fmt = str(item.get("ti_format") or "").lower()
    if lc in MIME_BY_LC_FORMAT:
        return MIME_BY_LC_FORMAT[lc]
    if fmt in MIME_BY_FORMAT:
        return MIME_BY_FORMAT[fmt]
    suffix = file_name(url).rsplit(".", 1)[-1].lower() if "." in file_name(url) else ""
    return MIME_BY_FORMAT.get(suffix, "application/octet-stream")


def requirements(item: dict) -> dict[str, str]:
    """``custom_properties.requirements`` [{name, value}] → {name: value}."""
    result = {}
    for req in as_list(as_dict(item.get("custom_properties")).get("requirements")):
        req = as_dict(req)
        if req.get("name"):
            result[str(req["name"])] = str(req.get("value", ""))
    return result


def source_pdf_item(items: list[dict]) -> dict | None:
    """The textbook PDF (§2.4 selection rule): the first item with ``ti_is_source_file`` and
    a format other than folder; else the first ``source``/``pdf`` flagged pdf."""
    for item in items:
        if item.get("ti_is_source_file") is True and str(item.get("ti_format")) != "folder" \
                and item_urls(item):
            return item
    for item in items:
        if item.get("ti_file_flag") in ("source", "pdf") and item.get("ti_format") == "pdf" \
                and item_urls(item):
            return item
    return None


def file_spec(item: dict, role: str) -> FileSpec:
    urls = item_urls(item)
    md5 = str(item.get("ti_md5") or "").lower() or None
    return FileSpec(role=role, mime=mime_of(item, urls[0]), name=file_name(urls[0]),
                    size=as_int(item.get("ti_size")) or None,
                    md5=md5 if md5 and re.fullmatch(r"[0-9a-f]{32}", md5) else None,
                    urls=tuple(urls))


def cover_spec(entry: dict) -> FileSpec | None:
    """The public cover image (custom_properties.thumbnails[0]); optional for readiness."""
    for url in as_list(as_dict(entry.get("custom_properties")).get("thumbnails")):
        if isinstance(url, str) and url.startswith("http"):
            mime = mime_of({}, url)
            if not mime.startswith("image/"):
                mime = "image/jpeg"
            return FileSpec(role="cover", mime=mime, name=file_name(url), urls=(url,),
                            extra={"optional": True})
    return None


def textbook_files(detail: dict) -> list[FileSpec]:
    """The source PDF (size, md5, mirrors) and the cover of one book or bundle child."""
    items = [as_dict(i) for i in as_list(detail.get("ti_items"))]
    specs = []
    pdf = source_pdf_item(items)
    if pdf is not None:
        spec = file_spec(pdf, "source")
        spec.mime = "application/pdf"
        specs.append(spec)
    cover = cover_spec(detail)
    if cover is not None:
        specs.append(cover)
    return specs


def textbook_extra(entry: dict, detail: dict | None = None) -> dict:
    """Small facts worth keeping (publisher, kind, page-image folder, bookmarks file)."""
    extra: dict[str, Any] = {"resource_type_code": entry.get("resource_type_code", "")}
    providers = [as_dict(p).get("name") for p in as_list(entry.get("provider_list"))]
    if any(providers):
        extra["publisher"] = "、".join(p for p in providers if p)
    for item in as_list((detail or {}).get("ti_items")):
        item = as_dict(item)
        if item.get("ti_file_flag") == "ebook_mapping" and item_urls(item):
            extra["ebook_mapping"] = item_urls(item)
    return extra


def hls_renditions(items: list[dict]) -> list[dict]:
    """Every HLS playlist item: {height, flag, urls, playlist_size, playlist_md5, count,
    total_size, duration}, highest first, one per height (href and href-m3u8 coincide)."""
    found: dict[int, dict] = {}
    for item in items:
        flag = str(item.get("ti_file_flag") or "")
        if str(item.get("ti_format")) != "m3u8" and "m3u8" not in str(item.get("lc_ti_format")):
            continue
        req = requirements(item)
        height = as_int(req.get("Height")) or RENDITION_FLAGS.get(flag)
        if not height or not item_urls(item) or height in found:
            continue
        found[height] = {"height": height, "flag": flag, "urls": item_urls(item),
                         "playlist_size": as_int(item.get("ti_size")),
                         "playlist_md5": str(item.get("ti_md5") or "") or None,
                         "count": as_int(req.get("count")),
                         "total_size": as_int(req.get("total_size")),
                         "duration": req.get("Duration", "")}
    return [found[h] for h in sorted(found, reverse=True)]


def choose_rendition(renditions: list[dict], wanted: int) -> dict | None:
    """The wanted height, else the nearest (ties: the smaller, it is cheaper to fetch)."""
    if not renditions:
        return None
    return min(renditions, key=lambda r: (abs(r["height"] - wanted), r["height"]))


def video_spec(items: list[dict], wanted: int) -> FileSpec | None:
    """One file for a video: the chosen rendition's playlist. Its size is the whole
    rendition (``total_size``), which is what a fetch costs; the other renditions are kept
    in ``extra`` as fallbacks."""
    renditions = hls_renditions(items)
    chosen = choose_rendition(renditions, wanted)
    if chosen is None:
        return None
    others = sorted((r for r in renditions if r is not chosen),
                    key=lambda r: (abs(r["height"] - wanted), r["height"]))
    return FileSpec(role="video", mime="application/vnd.apple.mpegurl",
                    name=f"{chosen['height']}p.m3u8", size=chosen["total_size"],
                    urls=tuple(chosen["urls"]),
                    extra={"hls": chosen, "fallbacks": others})


def document_specs(items: list[dict]) -> list[FileSpec]:
    """The PDF of a courseware / lesson plan / task sheet / exercise (listed 2–3 times in
    task sheets: one file), or the source file when there is no PDF."""
    pdfs = [i for i in items if str(i.get("ti_format")) == "pdf" and item_urls(i)]
    preferred = ([i for i in pdfs if i.get("ti_file_flag") == "pdf"]
                 or [i for i in pdfs if i.get("ti_file_flag") == "source"] or pdfs)
    if preferred:
        spec = file_spec(preferred[0], "pdf")
        spec.mime = "application/pdf"
        return [spec]
    source = source_pdf_item(items)
    return [file_spec(source, "source")] if source else []


def audio_specs(items: list[dict]) -> list[FileSpec]:
    """Audio: the transcoded mp3 (flag href) before the source (often wav), §2.5."""
    audio = [i for i in items if str(i.get("ti_format")) in ("mp3", "m4a", "ogg", "wav")
             and item_urls(i)]
    audio.sort(key=lambda i: (i.get("ti_format") != "mp3", i.get("ti_file_flag") != "href"))
    return [file_spec(audio[0], "audio")] if audio else []


# ------------------------------------------------------------------- lesson packages

def sub_kind(sub: dict) -> str:
    code = str(sub.get("resource_type_code") or "")
    if code in KIND_BY_CODE:
        return KIND_BY_CODE[code]
    names = " ".join([str(as_dict(sub.get("custom_properties")).get("alias_name") or ""),
                      tag_of(sub, "bklx"), text_of(sub.get("title"))])
    for word, kind in KIND_BY_NAME:
        if word in names:
            return kind
    return "document"


def relations_of(package: dict) -> tuple[str, list[dict]]:
    """(relations key, sub-resources) — national_course_resource, or course_resource for
    精品课, else the first list of resource objects found."""
    relations = as_dict(package.get("relations"))
    for key in RELATION_KEYS:
        if isinstance(relations.get(key), list):
            return key, [as_dict(r) for r in relations[key]]
    for key, value in relations.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return key, [as_dict(r) for r in value]
    return "", []


_REF = re.compile(r"^\$\.relations\.([A-Za-z_]+)\[([0-9,:\s*]*)\]$")


def _ref_indexes(ref: str, key: str, length: int) -> list[int]:
    match = _REF.match(ref.strip())
    if not match or match.group(1) != key:
        return []
    indexes: list[int] = []
    for token in match.group(2).split(","):
        token = token.strip()
        if token == "*":
            indexes.extend(range(length))
        elif ":" in token:
            start, _, stop = token.partition(":")
            indexes.extend(range(int(start or 0), min(int(stop or length), length)))
        elif token.isdigit():
            indexes.append(int(token))
    return [i for i in indexes if 0 <= i < length]


def lesson_of_parts(package: dict) -> list[tuple[str, int]]:
    """(课时 title, number) for each sub-resource, in relations order.

    ``resource_structure.relations`` groups them ("第一课时": [0,1,2,3]); without it, each
    sub-resource's ``bkks`` tag says its 课时.
    """
    key, subs = relations_of(package)
    lessons: list[tuple[str, int]] = [("", 0)] * len(subs)
    structure = as_list(as_dict(package.get("resource_structure")).get("relations"))
    for number, group in enumerate(structure, start=1):
        group = as_dict(group)
        title = text_of(group.get("title"))
        for ref in as_list(group.get("res_ref")):
            for index in _ref_indexes(str(ref), key, len(subs)):
                if lessons[index] == ("", 0):
                    lessons[index] = (title, chinese_number(title) or number)
    for index, sub in enumerate(subs):
        if lessons[index] == ("", 0):
            title = tag_of(sub, "bkks")
            if title:
                lessons[index] = (title, chinese_number(title) or 1)
    return lessons


def part_files(sub: dict, kind: str, rendition: int) -> list[FileSpec]:
    items = [as_dict(i) for i in as_list(sub.get("ti_items"))]
    if kind == "video":
        spec = video_spec(items, rendition)
        if spec is None:
            return []
        poster = next((i for i in items if i.get("ti_file_flag") == "thumbnail"
                       and str(i.get("ti_format")) in ("jpg", "jpeg", "png") and item_urls(i)),
                      None)
        if poster is None:
            return [spec]
        cover = file_spec(poster, "cover")
        cover.extra = {"optional": True}
        return [spec, cover]
    if kind == "audio":
        return audio_specs(items)
    return document_specs(items)


def part_extra(sub: dict) -> dict:
    props = as_dict(sub.get("custom_properties"))
    extra = {"resource_type_code": sub.get("resource_type_code", ""),
             "lesson_title": text_of(sub.get("global_title"))}
    for key in ("duration", "resolution", "format"):
        if props.get(key):
            extra[key] = props[key]
    return extra


def package_description(package: dict) -> str:
    teachers = [as_dict(t) for t in as_list(package.get("teacher_list"))]
    names = [str(t.get("name") or "") for t in teachers if t.get("name")]
    return ("授课教师：" + "、".join(names)) if names else ""


def package_extra(package: dict, book: dict | None) -> dict:
    extra: dict[str, Any] = {"resource_type_code": package.get("resource_type_code", ""),
                             "teachingmaterial_id": (teachingmaterial_ids(package)
                                                     or [(book or {}).get("id", "")])[0]}
    if book:
        extra["course_book"] = title_of(book)
    week = tag_of(package, "zxxweek")
    if week:
        extra["week"] = week
    props = as_dict(package.get("custom_properties"))
    if props.get("study_time"):
        extra["study_time"] = props["study_time"]
    teachers = [{"name": t.get("name"), "intro": t.get("intro")}
                for t in map(as_dict, as_list(package.get("teacher_list"))) if t.get("name")]
    if teachers:
        extra["teachers"] = teachers
    return extra


# --------------------------------------------------------------------- chapter trees

@dataclass
class ChapterTree:
    """One course book's chapter tree (§4.1 step 3): titles and teaching order by node id."""

    titles: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)   # pre-order index

    @classmethod
    def parse(cls, root: Any) -> "ChapterTree":
        tree = cls()
        nodes = root if isinstance(root, list) else as_list(as_dict(root).get("child_nodes"))
        stack: list[tuple[dict, str]] = [(as_dict(n), "") for n in reversed(nodes)]
        while stack:
            node, parent = stack.pop()
            node_id = node.get("id")
            if not isinstance(node_id, str):
                continue
            tree.titles[node_id] = text_of(node.get("title"))
            tree.order[node_id] = len(tree.order)
            if parent:
                tree.parents[node_id] = parent
            stack.extend((as_dict(c), node_id) for c in reversed(as_list(node.get("child_nodes"))))
        return tree

    def path(self, entry: dict) -> tuple[list[str], list[str]]:
        """(titles, ids) from the top to the lesson's leaf chapter.

        ``chapter_paths`` (node paths) first, then ``chapter_ids`` (whose last is the leaf),
        then the tree's own parents for the leaf.
        """
        ids: list[str] = []
        for path in as_list(entry.get("chapter_paths")):
            if isinstance(path, str) and path:
                ids = [p for p in path.split("/") if p]
                break
        if not ids:
            ids = [i for i in as_list(entry.get("chapter_ids")) if isinstance(i, str)]
        if len(ids) == 1 and ids[0] in self.parents:
            chain = [ids[0]]
            while chain[0] in self.parents and len(chain) < 32:
                chain.insert(0, self.parents[chain[0]])
            ids = chain
        titles = [self.titles[i] for i in ids if self.titles.get(i)]
        return titles, ids

    def position(self, chapter_ids: list[str]) -> int:
        """Teaching order of a lesson: the pre-order index of its deepest known chapter."""
        for node_id in reversed(chapter_ids):
            if node_id in self.order:
                return self.order[node_id]
        return len(self.order)


def iter_packages(entries: Iterable[Any]) -> Iterator[dict]:
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            yield entry
