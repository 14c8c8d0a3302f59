"""Course textbooks (teachingmaterials, §4.1) and the JSON of their lessons (§4.2-§4.4).

With captured data the version file (``urls`` as an array), parts 100-102 (2,400 course
books) and the tag tree are served as captured. Every course book has a chapter tree and a
lesson list (``parts.json`` → ``part_100.json``); only ``lesson_books`` of them (spread over
the list) have lessons, ``lessons_per_book`` each, the rest answer an empty list.
"""

from __future__ import annotations

import json
from pathlib import Path

from .auth import iso_time
from .common import PUBLIC_HOSTS, cn_number, make_uuid, mirrors, rng_for, time_pair
from .content import Streams, public_image
from .hls import Clip
from .lessons import Lesson, SubResource
from .textbooks import _epoch
from .trees import tree

PART_URL = "https://{host}.ykt.cbern.com.cn/zxx/ndrs/national_lesson/teachingmaterials/part_{n}.json"
LESSON_PART_URL = ("https://s-file-1.ykt.cbern.com.cn/zxx/ndrs/national_lesson/teachingmaterials/"
                   "{tm}/resources/part_100.json")
TEACHERS = ("张老师", "李老师", "王老师", "刘老师", "陈老师", "杨老师")


class CourseBook:
    def __init__(self, entry: dict, part: int):
        self.id: str = entry["id"]
        self.title: str = entry["title"]
        self.part = part
        self.tags = [t for t in entry.get("tag_list", [])]
        self.update_time = entry.get("update_time", "")
        self.updated_epoch = _epoch(self.update_time)
        self.entry_bytes = json.dumps(entry, ensure_ascii=False).encode("utf-8")
        self.lessons: list[Lesson] = []


class CourseShelf:
    def __init__(self, seed: int, small: bool, streams: Streams, captured_dir: Path | None,
                 lesson_books: int | None, lessons_per_book: int | None):
        self.seed, self.small, self.streams = seed, small, streams
        self.clip = Clip(2 if small else 10)
        self._verbatim: dict[int, bytes] = {}
        self.parts: dict[int, list[CourseBook]] = {}
        if captured_dir is not None:
            folder = Path(captured_dir) / "syncClassroom"
            self.version_bytes = (folder / "data_version.json").read_bytes()
            version = json.loads(self.version_bytes)
            self.module_version = version["module_version"]
            self.tag_tree_bytes = (folder / "national_lesson_tag.json").read_bytes()
            for url in version["urls"]:
                n = int(url.rsplit("_", 1)[1].split(".")[0])
                self._verbatim[n] = (folder / f"part_{n}.json").read_bytes()
                self.parts[n] = [CourseBook(e, n) for e in json.loads(self._verbatim[n])]
        else:
            self._generate()
        self.books = [b for n in sorted(self.parts) for b in self.parts[n]]
        self.by_id = {b.id: b for b in self.books}
        count = len(self.books) if lesson_books is None and not small else \
            min(len(self.books), lesson_books if lesson_books is not None else 4)
        per_book = lessons_per_book or (3 if small else 6)
        self.lessons: dict[str, Lesson] = {}
        self.subs: dict[str, SubResource] = {}
        self.keys: dict[str, tuple[SubResource, object]] = {}
        step = len(self.books) / count if count else 1
        for k in range(count):
            self._add_lessons(self.books[int(k * step)], k, per_book)

    def _generate(self) -> None:
        count, numbers = (6, (100, 101)) if self.small else (2400, (100, 101, 102))
        subjects = ("语文", "数学", "英语", "道德与法治", "科学")
        grades = ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级")
        editions = ("统编版", "人教版", "北师大版")
        books = []
        for i in range(count):
            rng = rng_for(self.seed, "course", i)
            subject, grade = subjects[i % 5], grades[(i // 5) % 8]
            edition, volume = editions[(i // 40) % 3], ("上册", "下册")[(i // 120) % 2]
            stage = "小学" if grade[0] in "一二三四五六" else "初中"
            book_id = make_uuid(self.seed, "course", i)
            created, updated, _ = time_pair(rng)
            tags = [(stage, "zxxxd"), (grade, "zxxnj"), (subject, "zxxxk"), (edition, "zxxbb"),
                    (volume, "zxxcc")]
            books.append({
                "creator": "10006945", "status": "ONLINE", "create_time": created,
                "online_time": updated, "update_time": updated,
                "custom_properties": {"auto_fill_thumb": False, "size": 0,
                                      "global_resource_id": book_id, "thumbnails": [
                    (f"https://{PUBLIC_HOSTS[i % 3]}/edu_product/esp/assets/"
                     f"{make_uuid(self.seed, 'cover', i)}.t/zh-CN/{1688378205066 + i}"
                     f"/transcode/image/1.jpg?v={1688388212308 + i}")]},
                "resource_custom_properties": {"version_visible": "RELEASE",
                                               "resource_source": "CREATE", "is_top": 0,
                                               "admins": ["452585792132"],
                                               "compound_node": "normal"},
                "title": f"{stage}{subject}{edition}{grade}{volume}", "description": None,
                "id": book_id, "resource_type_code": "teachingmaterials",
                "resource_type_code_name": "教材", "language": "zh-CN",
                "tag_list": [{"tag_dimension_id": dim, "tag_id": make_uuid(self.seed, "ntag", name),
                              "tag_name": name, "order_num": k} for k, (name, dim) in enumerate(tags)],
                "chapter_ids": [], "teachmeterial_ids": [], "chapter_paths": [],
                "container_id": "00000000-0000-0000-0000-000000000000",
                "create_container_id": "00000000-0000-0000-0000-000000000000",
                "ti_items": [], "version_id": book_id, "tenant_id": "0"})
        per_part = 1000 if not self.small else 3
        for k, n in enumerate(numbers):
            chunk = books[k * per_part:(k + 1) * per_part]
            self.parts[n] = [CourseBook(e, n) for e in chunk]
        self.module_version = rng_for(self.seed, "course-version").randrange(10**9, 2 * 10**9)
        self.version_bytes = json.dumps({
            "module": "national_lesson", "module_version": self.module_version,
            "urls": [PART_URL.format(host=("s-file-2", "s-file-1")[k % 2], n=n)
                     for k, n in enumerate(numbers)]}).encode("utf-8")
        self.tag_tree_bytes = json.dumps({"tag_path": make_uuid(self.seed, "ntag-root"),
                                          "hierarchies": [], "ext": None, "tenant_id": None},
                                         ensure_ascii=False).encode("utf-8")

    def _add_lessons(self, book: CourseBook, book_number: int, per_book: int) -> None:
        _, leaves = tree(self.seed, book.id, self.small)
        rng = rng_for(self.seed, "lessons", book.id)
        for index, leaf in enumerate(leaves[:per_book]):
            if self.small:      # every quirk at least once, on fixed lessons
                elite = index == 1 and book_number % 2 == 0
                periods = 2 if index == 0 else 1
                old_codes = index == 2 and book_number == 0
            else:
                elite, periods, old_codes = rng.random() < 0.1, rng.randint(1, 2), rng.random() < 0.15
            lesson = Lesson(self.seed, self.small, book, leaf, index, elite, periods, old_codes,
                            self.clip)
            if self.small:
                lesson.has_teachers = not old_codes
                lesson.string_titles = index == 0 and book_number == 1
            book.lessons.append(lesson)
            self.lessons[lesson.id] = lesson
            for sub in lesson.resources:
                if self.small:
                    sub.strict = book_number == 0 and index == 0 and sub.kind == "coursewares"
                else:
                    sub.strict = rng.random() < 0.03
                self.subs[sub.id.replace("-", "")] = sub
                for rendition in sub.renditions:
                    self.keys[rendition.key_id] = (sub, rendition)

    # ----------------------------------------------------------------------- JSON

    def part_bytes(self, n: int) -> bytes | None:
        if n in self._verbatim:
            return self._verbatim[n]
        if n in self.parts:
            return b"[" + b",".join(b.entry_bytes for b in self.parts[n]) + b"]"
        return None

    def lesson_list(self, book: CourseBook) -> list[dict]:
        return [self.lesson_json(lesson, detail=False) for lesson in book.lessons]

    def lesson_json(self, lesson: Lesson, detail: bool) -> dict:
        """A lesson package as in a lesson list (sub-resources without ti_items) or as the
        detail JSON (ti_items filled, ``teachingmaterial_id`` present)."""
        book, rng = lesson.book, rng_for(self.seed, "lesson-json", lesson.id)
        created = iso_time(lesson.updated_epoch - 40 * 86400)
        updated = iso_time(lesson.updated_epoch)
        teachers = [{"id": make_uuid(self.seed, "teacher", lesson.id, k),
                     "name": TEACHERS[(lesson.index + k) % len(TEACHERS)],
                     "nick_name": None, "intro": "高级教师"} for k in range(lesson.periods)]
        tags = [{"tag_id": make_uuid(self.seed, "bklx"), "tag_name": "课程包",
                 "tag_dimension_id": "bklx", "order_num": 0}]
        tags += [dict(t) for t in book.tags]
        tags += [{"tag_id": make_uuid(self.seed, "xjjc"), "tag_name": "新教材",
                  "tag_dimension_id": "zxxxjjc", "order_num": 1},
                 {"tag_id": make_uuid(self.seed, "week", lesson.index),
                  "tag_name": f"第{cn_number(lesson.index + 1)}周", "tag_dimension_id": "zxxweek",
                  "order_num": lesson.index}]
        key = lesson.relations_key
        structure = []
        for period in range(1, lesson.periods + 1):
            indexes = [r.index for r in lesson.resources if r.period == period]
            structure.append({"title": f"第{cn_number(period)}课时",
                              "res_ref": [f"$.relations.{key}[{','.join(map(str, indexes))}]"],
                              "custom_properties": {"teacher_ids": [teachers[period - 1]["id"]]}})
        value = {
            "id": lesson.id, "title": lesson.title, "global_title": {"zh-CN": lesson.title},
            "description": "", "resource_type_code": lesson.kind,
            "resource_type_code_name": "精品课" if lesson.elite else "国家课",
            "language": "zh-CN", "status": "ONLINE", "create_time": created,
            "update_time": updated, "online_time": updated, "creator": "10006945",
            "container_id": book.id, "create_container_id": book.id, "tenant_id": "0",
            "version_id": lesson.id, "chapter_ids": lesson.chapter_ids,
            "chapter_paths": [lesson.leaf.node_path], "teachmeterial_ids": [book.id],
            "tag_list": tags,
            "custom_properties": {
                "prom_resouce_type": "standard_lesson",
                "study_time": sum(int(r.renditions[0].count * r.renditions[0].durations[0])
                                  for r in lesson.videos),
                "ext_properties": {"lesson_list": [f"lesson_{p}.{key}"
                                                   for p in range(1, lesson.periods + 1)]},
                "lesson_extra": {f"lesson_{p}": {"teacher_ids": [teachers[p - 1]["id"]],
                                                 "faculty_advisor_ids": []}
                                 for p in range(1, lesson.periods + 1)},
                "thumbnails": [f"https://{PUBLIC_HOSTS[0]}{lesson.videos[0].cover_path}"]
                if lesson.videos else [],
                "sys_resource_space": rng.randrange(10**7, 10**9)},
            "faculty_advisor_list": [],
            "provider_list": [{"id": make_uuid(self.seed, "provider"), "name": "教育部资源中心",
                               "type": "provider"}],
            "producer_list": [],
            "relations": {key: [self.sub_json(r, detail) for r in lesson.resources]},
            "resource_structure": {"relations": structure},
            "ti_items": [],
        }
        if lesson.has_teachers:
            value["teacher_list"] = teachers
        if detail:
            value["teachingmaterial_id"] = book.id
        return value

    def sub_json(self, sub: SubResource, detail: bool) -> dict:
        lesson = sub.lesson
        period_name = f"第{cn_number(sub.period)}课时"
        long_title = f"{lesson.title}（{period_name}）"
        custom = {"alias_name": sub.alias}
        files = sub.files(self.streams)
        if sub.is_video:
            r720 = sub.rendition("href-720p-m3u8")
            seconds = int(r720.count * r720.durations[0])
            custom.update({"duration": f"PT{seconds // 60}M{seconds % 60}S", "format": "mp4",
                           "size": int(r720.total_size * 2.6), "resolution": "1920*1080",
                           "width": "1920", "height": "1080", "bit_rate": "1200000"})
        elif sub.document_path:
            source_format = {"coursewares": "pptx", "lesson_plandesign": "docx"}.get(sub.kind, "pdf")
            custom["format"] = source_format
            if not (lesson.old_codes and sub.index % 2):     # quirk: size sometimes missing
                custom["size"] = files[sub.document_path].size
        value = {
            "id": sub.id, "title": sub.alias,
            "global_title": long_title if lesson.string_titles else {"zh-CN": long_title},
            "resource_type_code": sub.code, "language": "zh-CN", "status": "ONLINE",
            "update_time": iso_time(lesson.updated_epoch),
            "tag_list": [{"tag_id": make_uuid(self.seed, "bkks", sub.period), "tag_name": period_name,
                          "tag_dimension_id": "bkks", "order_num": sub.period},
                         {"tag_id": make_uuid(self.seed, "bklx", sub.kind), "tag_name": sub.alias,
                          "tag_dimension_id": "bklx", "order_num": 0}],
            "custom_properties": custom,
            "ti_items": self.ti_items(sub) if detail else [],
        }
        return value

    def ti_items(self, sub: SubResource) -> list[dict]:
        files = sub.files(self.streams)
        items = []
        for rendition in sub.renditions:
            playlist = files[rendition.playlist_path]
            seconds = int(rendition.count * rendition.durations[0])
            requirements = [
                ("Height", rendition.height), ("Width", rendition.width),
                ("total_size", rendition.total_size), ("count", rendition.count),
                ("Duration", seconds), ("BitRate", rendition.total_size * 8 // max(1, seconds)),
                ("audio_bitrate", 128000), ("encryption", "true"),
                ("Video", json.dumps({"codec": "h264", "profile": "Main", "fps": 25})),
                ("Audio", json.dumps({"codec": "aac", "channels": 2, "sample_rate": 44100}))]
            for flag in rendition.flags:
                items.append({
                    "ti_file_flag": flag, "ti_is_source_file": False, "ti_format": "m3u8",
                    "lc_ti_format": "video/m3u8", "ti_size": playlist.size, "ti_md5": playlist.md5,
                    "ti_storage": "cs_path:${ref-path}" + rendition.playlist_path,
                    "ti_storages": mirrors(rendition.playlist_path),
                    "custom_properties": {"encryption": "drm", "requirements": [
                        {"name": n, "type": "QUOTA", "value": str(v)} for n, v in requirements]}})
        if sub.is_video:
            cover = public_image(self.streams, self.small, sub.cover_path)
            items.append({"ti_file_flag": "thumbnail", "ti_is_source_file": False,
                          "ti_format": "jpg", "lc_ti_format": "image/jpg", "ti_size": cover.size,
                          "ti_md5": cover.md5, "ti_storages": mirrors(sub.cover_path, PUBLIC_HOSTS)})
        if sub.document_path:
            pdf = files[sub.document_path]
            pdf_item = {"ti_file_flag": "pdf", "ti_is_source_file": False, "ti_format": "pdf",
                        "lc_ti_format": "application/pdf", "ti_size": pdf.size, "ti_md5": pdf.md5,
                        "ti_storage": "cs_path:${ref-path}" + pdf.path,
                        "ti_storages": mirrors(pdf.path)}
            items.append(pdf_item)
            if sub.kind in ("learning_task", "after_class_exercise"):
                items.append(dict(pdf_item, ti_file_flag="href"))     # listed twice (§4.3)
            for folder in ("image",) + (("html", "thumbnail")
                                        if sub.kind in ("learning_task", "after_class_exercise")
                                        else ()):
                path = f"{sub.folder_base}/{folder}"
                items.append({"ti_file_flag": folder, "ti_is_source_file": False,
                              "ti_format": "folder", "lc_ti_format": "folder", "ti_size": 0,
                              "ti_md5": "", "ti_storages": mirrors(path)})
        if sub.kind == "coursewares":
            for path, flag, fmt, lc in ((sub.remarks_path, "remarks", "json", "document/json"),
                                        (sub.superboard_path, "superboard", "superboard",
                                         "superboard")):
                entry = files[path]
                items.append({"ti_file_flag": flag, "ti_is_source_file": False,
                              "ti_format": fmt, "lc_ti_format": lc, "ti_size": entry.size,
                              "ti_md5": entry.md5, "ti_storages": mirrors(path)})
        return items
