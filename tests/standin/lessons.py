"""Lesson packages (课程教学, §4): sub-resources ("五件套"), their files and video renditions.

Records only: JSON shapes are in :mod:`courses`. A :class:`Lesson` hangs on a leaf of its
course book's chapter tree; each 课时 (period) has the five kinds (three for 精品课
``elite_lesson``). Files are made lazily per sub-resource (``SubResource.files``).
"""

from __future__ import annotations

import hashlib
import string
from functools import cached_property

from .common import hex32, make_uuid, rng_for
from .content import FileEntry, LiteralBody, Streams
from .hls import PACKET, Clip, SegmentBody, encrypted_size, media_playlist
from .trees import Leaf

NATIONAL_KINDS = (("micro_lesson_video", "视频课程"), ("coursewares", "课件"),
                  ("lesson_plandesign", "教学设计"), ("learning_task", "学习任务单"),
                  ("after_class_exercise", "课后练习"))
ELITE_KINDS = (("micro_lesson_video", "微课视频"), ("learning_task", "学习任务单"),
               ("after_class_exercise", "作业练习"))
OLD_CODES = {"micro_lesson_video": "assets_video", "learning_task": "assets_document",
             "after_class_exercise": "assets_document"}

# (ti_file_flags, width, height, plaintext bytes per segment: small (2 s), large (10 s)).
# Large sizes follow §8: 14 min lesson => 1080p 79 MB, 720p 42-45 MB, 480p 28.5, 360p 22.6.
RENDITIONS = ((("href", "href-m3u8"), 1920, 1080, 64_000, 870_000),
              (("href-720p-m3u8",), 1280, 720, 48_000, 495_000),
              (("href-480p-m3u8",), 852, 480, 40_000, 313_000),
              (("href-360p-m3u8",), 640, 360, 34_000, 248_000))
DOC_SIZES = {"coursewares": 2_000_000, "lesson_plandesign": 143_000,
             "learning_task": 110_000, "after_class_exercise": 100_000}


class Rendition:
    """One HLS media playlist with its encrypted segments."""

    # Built for every lesson at start (the key service must know every key id), so only
    # ids are computed here; sizes, key and paths wait until something asks.
    def __init__(self, sub: SubResource, flags, width, height, base_size, clip: Clip):
        self.sub, self.base_size, self.clip = sub, base_size, clip
        self.flags: tuple[str, ...] = flags
        self.flag = flags[-1] if len(flags) == 1 else flags[0]
        self.width, self.height = width, height
        self.key_id = hashlib.md5(f"{sub.seed}:key:{sub.id}:{height}".encode()).hexdigest()
        self.count = sub.segment_count
        self.durations = [float(clip.seconds)] * self.count

    @cached_property
    def key(self) -> bytes:
        """The raw AES-128 key: 16 ASCII characters, as observed (§4.5)."""
        rng = rng_for(self.sub.seed, "key", self.key_id)
        return "".join(rng.choice(string.ascii_letters + string.digits)
                       for _ in range(16)).encode("ascii")

    @cached_property
    def stem(self) -> str:
        seed, sub_id, height = self.sub.seed, self.sub.id, self.height
        return (f"{make_uuid(seed, 'stem', sub_id, height)}-{self.width}x{height}-true-"
                f"{hashlib.md5(f'{seed}:a:{sub_id}:{height}'.encode()).hexdigest()}-"
                f"{hashlib.md5(f'{seed}:b:{sub_id}:{height}'.encode()).hexdigest()}")

    @property
    def directory(self) -> str:
        return f"/edu_product/esp/assets/{self.sub.id}.t/zh-CN/{self.sub.stamp}/videos"

    @property
    def playlist_path(self) -> str:
        return f"{self.directory}/{self.stem}.m3u8"

    @cached_property
    def plain_sizes(self) -> list[int]:
        """Plaintext bytes per segment: whole TS packets, never less than the clip."""
        rng = rng_for(self.sub.seed, "rendition", self.sub.id, self.height)
        minimum = len(self.clip.data())
        sizes = []
        for _ in range(self.count):
            size = max(minimum, int(self.base_size * rng.uniform(0.9, 1.1)))
            sizes.append(-(-size // PACKET) * PACKET)
        return sizes

    @property
    def total_size(self) -> int:
        """Bytes of all encrypted segments (``requirements.total_size``)."""
        return sum(encrypted_size(s) for s in self.plain_sizes)

    @property
    def url(self) -> str:
        """The playlist's absolute platform URL (first mirror)."""
        return f"https://r1-ndr-private.ykt.cbern.com.cn{self.playlist_path}"

    def segment_path(self, index: int) -> str:
        return f"{self.directory}/{self.stem}-{index:05d}.ts"

    def segment_urls(self) -> list[str]:
        return [f"https://r1-ndr-private.ykt.cbern.com.cn{self.segment_path(i)}"
                for i in range(self.count)]

    def playlist_bytes(self) -> bytes:
        return media_playlist(self.stem, self.key_id, self.durations)


class SubResource:
    """One of a lesson's five kinds for one 课时."""

    def __init__(self, lesson: Lesson, code: str, alias: str, period: int, index: int):
        self.lesson, self.seed, self.small = lesson, lesson.seed, lesson.small
        self.kind = code                                  # canonical kind
        self.code = OLD_CODES.get(code, code) if lesson.old_codes else code  # as served
        self.alias, self.period, self.index = alias, period, index
        self.id = make_uuid(self.seed, "sub", lesson.id, period, code)
        digest = hashlib.md5(f"{self.seed}:sub:{self.id}".encode()).digest()
        self.stamp = 1_700_000_000_000 + int.from_bytes(digest[:4], "big") * 7
        self.strict = False
        self.segment_count = 3 + digest[4] % 3 if self.small else 91
        self.renditions: list[Rendition] = []
        self._files: dict[str, FileEntry] | None = None

    @property
    def is_video(self) -> bool:
        return self.kind == "micro_lesson_video"

    def build_renditions(self, clip: Clip) -> None:
        if self.is_video:
            self.renditions = [Rendition(self, flags, w, h, small if self.small else large,
                                         clip)
                               for flags, w, h, small, large in RENDITIONS]

    def rendition(self, flag: str) -> Rendition:
        return next(r for r in self.renditions if flag in r.flags)

    # ------------------------------------------------------------------------- paths

    @property
    def document_path(self) -> str | None:
        base = f"/edu_product/esp/{self.kind}/{self.id}.t/zh-CN/{self.stamp}/transcode"
        if self.kind in ("coursewares", "lesson_plandesign"):
            return f"{base}/pdf.pdf"
        if self.kind in ("learning_task", "after_class_exercise"):
            return f"/edu_product/65/document/{hex32(self.id)}/pdf.pdf"
        return None

    @property
    def folder_base(self) -> str:
        if self.kind in ("learning_task", "after_class_exercise"):
            return f"/edu_product/65/document/{hex32(self.id)}"
        return f"/edu_product/esp/{self.kind}/{self.id}.t/zh-CN/{self.stamp}/transcode"

    @property
    def remarks_path(self) -> str:
        return f"{self.folder_base}/{self.lesson.title}.json"

    @property
    def superboard_path(self) -> str:
        return f"{self.folder_base}/{make_uuid(self.seed, 'board', self.id)}/document.superboard"

    @property
    def cover_path(self) -> str:
        return f"/edu_product/65/video/{hex32(self.id)}/cover/1.jpg"

    def files(self, streams: Streams) -> dict[str, FileEntry]:
        """Every private file of this sub-resource by decoded path."""
        if self._files is not None:
            return self._files
        files: dict[str, FileEntry] = {}
        modified = self.lesson.updated_epoch

        def add(path, body, kind):
            files[path] = FileEntry(path, body, kind, strict=self.strict,
                                    last_modified=modified, owner=self.id)

        rng = rng_for(self.seed, "files", self.id)
        if self.document_path:
            size = rng.randint(10_000, 40_000) if self.small else \
                int(DOC_SIZES[self.kind] * rng.uniform(0.8, 1.2))
            add(self.document_path, streams.body("pdf", size, self.id), "pdf")
        if self.kind == "coursewares":
            remarks = {"title": self.lesson.title,
                       "notes": [{"page": p, "text": f"第{p}页讲稿"} for p in range(1, 6)]}
            add(self.remarks_path,
                LiteralBody(_json_bytes(remarks)), "json")
            add(self.superboard_path, LiteralBody(b"SBRD" + self.id.encode() * 8), "superboard")
        for rendition in self.renditions:
            add(rendition.playlist_path, LiteralBody(rendition.playlist_bytes()), "m3u8")
            for index, plain_size in enumerate(rendition.plain_sizes):
                add(rendition.segment_path(index),
                    SegmentBody(rendition.clip, index, plain_size, rendition.key), "ts")
        self._files = files
        return files


def _json_bytes(value) -> bytes:
    import json
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class Lesson:
    """A lesson package (national_lesson or elite_lesson) on one leaf of a course book."""

    def __init__(self, seed: int, small: bool, book, leaf: Leaf, index: int, elite: bool,
                 periods: int, old_codes: bool, clip: Clip):
        self.seed, self.small, self.book, self.leaf, self.index = seed, small, book, leaf, index
        self.id = make_uuid(seed, "lesson", book.id, index)
        self.kind = "elite_lesson" if elite else "national_lesson"
        self.title = leaf.title.split(" ", 1)[-1]
        self.periods = periods
        self.old_codes = old_codes
        rng = rng_for(seed, "lesson", self.id)
        self.updated_epoch = book.updated_epoch + rng.uniform(0, 30 * 86400)
        self.string_titles = rng.random() < 0.2       # quirk: global_title as a plain string
        self.has_teachers = rng.random() < 0.85        # quirk: optional teacher_list missing
        kinds = ELITE_KINDS if elite else NATIONAL_KINDS
        self.resources: list[SubResource] = []
        for period in range(1, periods + 1):
            for code, alias in kinds:
                sub = SubResource(self, code, alias, period, len(self.resources))
                sub.build_renditions(clip)
                self.resources.append(sub)

    @property
    def elite(self) -> bool:
        return self.kind == "elite_lesson"

    @property
    def chapter_ids(self) -> list[str]:
        return [self.leaf.unit_id, self.leaf.node_id]

    @property
    def relations_key(self) -> str:
        return "course_resource" if self.elite else "national_course_resource"

    @property
    def videos(self) -> list[SubResource]:
        return [r for r in self.resources if r.is_video]
