"""The whole generated platform: JSON routes of the static hosts and file lookup.

``Catalogue`` is what ``Standin.catalogue`` exposes to tests (ids, files, sizes, md5s, keys)
and what the server asks for every request. All JSON holds absolute platform URLs.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path

from .common import hex32, id_tokens
from .content import FileEntry, Streams, public_image
from .courses import LESSON_PART_URL, CourseBook, CourseShelf
from .hls import KeyService
from .lessons import Lesson, SubResource
from .textbooks import Textbook, TextbookShelf
from .trees import tree

_ID = r"([0-9A-Za-z-]{8,64})"
_PUBLIC_IMAGE = re.compile(r"(/transcode/image/\d+\.jpg|/thumbnails/[^/]+\.(?:png|jpg)"
                           r"|/cover/\d+\.jpg|/transcode/thumbnail\.jpg)$")
_JSON_CACHE_ENTRIES = 512


class Catalogue:
    """Textbooks, course books, lessons and their files, deterministic from the seed."""

    def __init__(self, seed: int = 1, small: bool = True, captured_dir: Path | None = None,
                 lesson_books: int | None = None, lessons_per_book: int | None = None):
        self.seed, self.small = seed, small
        self.streams = Streams(seed)
        self.shelf = TextbookShelf(seed, small, self.streams, captured_dir)
        self.courses = CourseShelf(seed, small, self.streams, captured_dir, lesson_books,
                                   lessons_per_book)
        self.keyservice = KeyService(self._rendition_key)
        self.keyservice.add("0123456789abcdef0123456789abcdef", b"0123456789ABCDEF")  # §10 vector
        self._owners: dict[str, object] = {hex32(b.id): b for b in self.shelf.books}
        for audio_id, (book, _) in self.shelf.audio_owner.items():
            self._owners[hex32(audio_id)] = book
        self._owners.update(self.courses.subs)
        self._json_cache: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._routes = [(re.compile("^" + pattern + "$"), handler) for pattern, handler in (
            (r"/zxx/ndrs/resources/tch_material/version/data_version\.json", self._tch_version),
            (r"/zxx/ndrs/resources/tch_material/part_(\d+)\.json", self._tch_part),
            (r"/zxx/ndrs/tags/tch_material_tag\.json", lambda: (200, self.shelf.tag_tree_bytes)),
            (rf"/zxx/ndrv2/resources/tch_material/details/{_ID}\.json", self._tch_detail),
            (rf"/zxx/ndrs/resources/tch_material/details/{_ID}\.json", self._tch_detail),
            (rf"/zxx/ndrs/resources/{_ID}/relation_audios\.json", self._audios),
            (rf"/zxx/ndrs/special_edu/resources/details/{_ID}\.json", self._special_detail),
            (rf"/zxx/ndrs/special_edu/thematic_course/{_ID}/resources/list\.json", self._bundle),
            (r"/zxx/ndrs/tags/national_lesson_tag\.json", lambda: (200, self.courses.tag_tree_bytes)),
            (r"/zxx/ndrs/national_lesson/teachingmaterials/version/data_version\.json",
             lambda: (200, self.courses.version_bytes)),
            (r"/zxx/ndrs/national_lesson/teachingmaterials/part_(\d+)\.json", self._course_part),
            (rf"/zxx/ndrs/national_lesson/teachingmaterials/details/{_ID}\.json", self._course_detail),
            (rf"/zxx/ndrv2/national_lesson/trees/{_ID}\.json", self._tree),
            (rf"/zxx/ndrs/national_lesson/trees/{_ID}\.json", self._tree),
            (rf"/zxx/ndrs/national_lesson/teachingmaterials/{_ID}/resources/parts\.json",
             self._lesson_parts),
            (rf"/zxx/ndrs/national_lesson/teachingmaterials/{_ID}/resources/part_100\.json",
             self._lesson_list),
            (rf"/zxx/ndrv2/national_lesson/resources/details/{_ID}\.json", self._lesson_detail),
            (rf"/zxx/ndrv2/resources/{_ID}\.json", self._elite_detail),
        )]

    # ------------------------------------------------------------ what tests look at

    @property
    def textbooks(self) -> list[Textbook]:
        return self.shelf.books

    def textbook(self, book_id: str) -> Textbook:
        return self.shelf.by_id[book_id]

    @property
    def textbook_module_version(self) -> int:
        return self.shelf.module_version

    @property
    def course_books(self) -> list[CourseBook]:
        return self.courses.books

    def course_book(self, tm_id: str) -> CourseBook:
        return self.courses.by_id[tm_id]

    @property
    def lesson_books(self) -> list[CourseBook]:
        return [b for b in self.courses.books if b.lessons]

    @property
    def lessons(self) -> dict[str, Lesson]:
        return self.courses.lessons

    def lesson(self, lesson_id: str) -> Lesson:
        return self.courses.lessons[lesson_id]

    @property
    def elite_ids(self) -> list[str]:
        return [lid for lid, lesson in self.courses.lessons.items() if lesson.elite]

    @property
    def strict_ids(self) -> set[str]:
        """Ids of textbooks and sub-resources whose files refuse placeholder auth."""
        return ({b.id for b in self.shelf.books if b.strict and b.has_pdf}
                | {s.id for s in self.courses.subs.values() if s.strict})

    def tree(self, tree_id: str):
        """(root nodes, leaves) of the chapter tree of a course book or e-textbook."""
        return tree(self.seed, tree_id, self.small)

    def sub_resource(self, sub_id: str) -> SubResource:
        return self.courses.subs[hex32(sub_id)]

    def key(self, key_id: str) -> bytes | None:
        return self.keyservice.raw_key(key_id)

    def touch_textbook(self, book_id: str) -> Textbook:
        """Publish a new edition of one book (see TextbookShelf.touch)."""
        book = self.textbook(book_id)
        with self._lock:
            self.shelf.touch(book)
            self._json_cache.clear()
        return book

    def _rendition_key(self, key_id: str) -> bytes | None:
        found = self.courses.keys.get(key_id)
        return found[1].key if found else None

    # --------------------------------------------------------------------- serving

    def json_body(self, path: str) -> tuple[int, bytes] | None:
        """(status, body) for a static-host path; None when no route matches (404)."""
        if path.startswith("/zxx_secondary/"):           # bdcs-file-* layout (§1)
            path = "/zxx/" + path[len("/zxx_secondary/"):]
        with self._lock:
            cached = self._json_cache.get(path)
            if cached is not None:
                self._json_cache.move_to_end(path)
                return cached
        for pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                answer = handler(*match.groups())
                if answer is None:
                    return None
                status, value = answer
                body = value if isinstance(value, bytes) else _dumps(value)
                with self._lock:
                    self._json_cache[path] = (status, body)
                    while len(self._json_cache) > _JSON_CACHE_ENTRIES:
                        self._json_cache.popitem(last=False)
                return status, body
        return None

    def file(self, path: str) -> FileEntry | None:
        """The object at a bucket path (decoded, no host), or None."""
        if _PUBLIC_IMAGE.search(path):
            return public_image(self.streams, self.small, path)
        for token in id_tokens(path):
            owner = self._owners.get(token)
            if owner is None:
                continue
            files = owner.files if isinstance(owner, Textbook) else owner.files(self.streams)
            entry = files.get(path)
            if entry is not None:
                return entry
        return None


    # ---------------------------------------------------------------------- routes

    def _tch_version(self):
        return 200, self.shelf.version_bytes

    def _tch_part(self, n):
        body = self.shelf.part_bytes(int(n))
        return None if body is None else (200, body)

    def _tch_detail(self, book_id):
        book = self.shelf.by_id.get(book_id)
        if book is None:
            return None
        if book.node != "normal" or not book.has_pdf:
            return 403, _access_denied()                  # bundles and their children (§2.6)
        return 200, self.shelf.detail(book)

    def _audios(self, book_id):
        book = self.shelf.by_id.get(book_id)
        if book is None or not book.has_audio:
            return None
        return 200, self.shelf.relation_audios(book)

    def _special_detail(self, book_id):
        book = self.shelf.by_id.get(book_id)
        if book is None or book.node == "normal":
            return None
        return 200, self.shelf.detail(book)

    def _bundle(self, book_id):
        book = self.shelf.by_id.get(book_id)
        if book is None or book.node != "parent":
            return None
        return 200, [self.shelf.detail(child) for child in self.shelf.children(book)]

    def _course_part(self, n):
        body = self.courses.part_bytes(int(n))
        return None if body is None else (200, body)

    def _course_detail(self, tm_id):
        book = self.courses.by_id.get(tm_id)
        return None if book is None else (200, book.entry_bytes)

    def _tree(self, tree_id):
        if tree_id not in self.courses.by_id and tree_id not in self.shelf.by_id:
            return None
        roots, _ = tree(self.seed, tree_id, self.small)
        return 200, list(roots)

    def _lesson_parts(self, tm_id):
        if tm_id not in self.courses.by_id:
            return None
        return 200, [LESSON_PART_URL.format(tm=tm_id)]

    def _lesson_list(self, tm_id):
        book = self.courses.by_id.get(tm_id)
        return None if book is None else (200, self.courses.lesson_list(book))

    def _lesson_detail(self, lesson_id):
        lesson = self.courses.lessons.get(lesson_id)
        if lesson is None:
            return None
        if lesson.elite:
            return 403, _access_denied()                  # §4.1 step 5
        return 200, self.courses.lesson_json(lesson, detail=True)

    def _elite_detail(self, lesson_id):
        lesson = self.courses.lessons.get(lesson_id)
        if lesson is None or not lesson.elite:
            return None
        return 200, self.courses.lesson_json(lesson, detail=True)


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _access_denied() -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>AccessDenied</Code>\n'
            b"  <Message>You have no right to access this object because of bucket acl.</Message>\n"
            b"</Error>\n")
