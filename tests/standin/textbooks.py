"""The e-textbook side (电子教材, §2): version file, parts, tag tree, details, bundles, audio.

With captured data: the version file, ``part_103.json`` and the tag tree are served as
captured (byte for byte until a test changes a book); parts 100-102, which were never
captured, are generated from the captured tag tree's leaves in part_103's entry shape, so a
full sync sees about 3,800 books. Without captured data a catalogue of the same shapes is
generated from a generated tag tree: 26 books (small) or 3,800 (large).

Each book's files are made lazily (``files``) from its record: the source PDF (size from
the list entry's ``custom_properties.size`` when ``small`` is False, tens of KB when True),
the ``ebook_mapping`` text, and page images. Documented quirks are spread over the books:
``ti_storages`` empty with only a ``cs_path:`` storage, PDFs on ``r*-ndr-doc-private``,
old ``pdf.pdf`` names, ``description`` missing, bundles (``thematic_course``) whose children
answer 403 on the tch_material detail path, strict objects (体育与健康教师用书, some 高中
science books) that need a real MAC.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import tags as tag_trees
from .auth import iso_time
from .common import (
    BASE_EPOCH,
    DOC_PRIVATE_HOSTS,
    PUBLIC_HOSTS,
    make_uuid,
    mirrors,
    ms_stamp,
    rng_for,
    time_pair,
)
from .content import FileEntry, LiteralBody, Streams, public_image
from .trees import tree

PART_URL = "https://{host}.ykt.cbern.com.cn/zxx/ndrs/resources/tch_material/part_{n}.json"
CAPTURED_TOTAL = 3800          # books a full sync sees with captured data (§2.2)
REVISED = "（根据2022年版课程标准修订）"
PUBLISHERS = {"统编版": "人民教育出版社", "人教版": "人民教育出版社", "北师大版": "北京师范大学出版社",
              "苏教版": "江苏凤凰教育出版社", "华东师大版": "华东师范大学出版社", "外研版": "外语教学与研究出版社"}
HIGH_SCHOOL_VOLUMES = ("必修 第一册", "必修 第二册", "选择性必修 第一册", "选择性必修 第二册")
STRICT_SUBJECTS = ("物理", "化学", "生物学")


class Textbook:
    """One list entry and what the stand-in knows about it."""

    def __init__(self, entry: dict, part: int, captured: bool, seed: int, small: bool,
                 entry_bytes: bytes):
        rng = rng_for(seed, "book", entry["id"])
        self.id: str = entry["id"]
        self.title: str = entry.get("title") or entry["global_title"]["zh-CN"]
        self.part = part
        self.captured = captured
        self.kind: str = entry["resource_type_code"]        # assets_document / thematic_course
        self.node: str = entry.get("resource_custom_properties", {}).get("compound_node", "normal")
        tm_ids = entry.get("teachmeterial_ids") or []
        self.parent_id: str | None = tm_ids[0] if self.node == "sub" and tm_ids else None
        tags = {tag["tag_dimension_id"]: tag["tag_name"] for tag in entry.get("tag_list", [])}
        self.subject = tags.get("zxxxk", "")
        self.stage = tags.get("zxxxd", "")
        self.update_time: str = entry.get("update_time", "")
        listed = int(entry.get("custom_properties", {}).get("size") or 0)
        # The list's size is the PDF's size, except for captured entries when small (they
        # are served verbatim with their real sizes; their PDFs are tens of KB).
        small_size = rng.randint(20_000, 80_000)
        self.pdf_size = listed if listed and not (small and captured) else small_size
        self.pages = max(1, len(entry.get("custom_properties", {}).get("preview") or {}))
        self.has_pdf = self.kind == "assets_document"
        self.has_audio = "英语" in self.subject and self.has_pdf
        self.strict = "体育与健康教师用书" in self.title or (
            "高中" in self.stage and any(s in self.subject for s in STRICT_SUBJECTS)
            and rng.random() < 0.1)
        roll = rng.random()
        self.storage = "cs_path" if roll < 0.01 else "doc_private" if roll < 0.05 else "mirrors"
        self.old_name = rng.random() < 0.08
        self.file_stamp = ms_stamp(rng)
        self.image_stamp = _image_stamp(entry) or ms_stamp(rng)
        self.revision = 0
        self.shelf: TextbookShelf | None = None
        self._file_map: dict[str, FileEntry] | None = None
        self.entry_bytes = entry_bytes

    def entry(self) -> dict:
        return json.loads(self.entry_bytes)

    # ------------------------------------------------------------------- file paths

    @property
    def pdf_path(self) -> str:
        if self.old_name:
            return f"/edu_product/esp/assets/{self.id}.pkg/pdf.pdf"
        name = " ".join(self.title.replace("·", " ").replace("•", " ").split())
        return f"/edu_product/esp/assets/{self.id}.pkg/{name}_{self.file_stamp}.pdf"

    @property
    def mapping_path(self) -> str:
        return f"/edu_product/esp/assets/{self.id}.pkg/ebook_mapping_{self.file_stamp}.txt"

    @property
    def image_dir(self) -> str:
        return f"/edu_product/esp/assets/{self.id}.t/zh-CN/{self.image_stamp}/transcode/image"

    @property
    def pdf_urls(self) -> list[str]:
        """The mirrors a client may use (``ti_storages``, or the cs_path expansion)."""
        if self.storage == "doc_private":
            return mirrors(self.pdf_path, DOC_PRIVATE_HOSTS, 2)
        return mirrors(self.pdf_path)

    @property
    def url(self) -> str:
        return self.pdf_urls[0]

    @property
    def files(self) -> dict[str, FileEntry]:
        """This book's private files by decoded path (PDF, ebook_mapping, audio)."""
        return self.shelf.files(self)

    @property
    def pdf(self) -> FileEntry | None:
        return self.files.get(self.pdf_path)

    @property
    def size(self) -> int:
        return self.pdf.size if self.pdf else 0

    @property
    def md5(self) -> str:
        return self.pdf.md5 if self.pdf else ""


def _image_stamp(entry: dict) -> int | None:
    for url in (entry.get("custom_properties", {}).get("preview") or {}).values():
        parts = url.split("/zh-CN/")
        if len(parts) == 2 and parts[1].split("/")[0].isdigit():
            return int(parts[1].split("/")[0])
    return None


class TextbookShelf:
    """Everything under ``/zxx/ndrs/resources/tch_material`` and the book files."""

    def __init__(self, seed: int, small: bool, streams: Streams, captured_dir: Path | None):
        self.seed, self.small, self.streams = seed, small, streams
        # Generating ~3,600 entries takes most of a second; tests make many stand-ins, so
        # the bytes are kept per (seed, small, captured_dir) for the life of the process.
        cache_key = (seed, small, str(captured_dir))
        blueprint = _BLUEPRINTS.get(cache_key)
        if blueprint is None:
            blueprint = _BLUEPRINTS[cache_key] = (
                self._captured_blueprint(Path(captured_dir) / "tchMaterial")
                if captured_dir is not None else self._generated_blueprint())
        self.version_bytes = blueprint["version_bytes"]
        self.module_version = blueprint["module_version"]
        self.part_urls = list(blueprint["part_urls"])
        self.tag_tree_bytes = blueprint["tag_tree_bytes"]
        self._verbatim: dict[int, bytes] = dict(blueprint["verbatim"])
        self.parts: dict[int, list[Textbook]] = {
            n: [Textbook(json.loads(raw), n, n in self._verbatim, seed, small, raw) for raw in entries]
            for n, entries in blueprint["parts"].items()}
        self.books: list[Textbook] = [b for n in blueprint["order"] for b in self.parts[n]]
        if small and captured_dir is None:      # every quirk at least once, on fixed books
            books = self.parts[100]
            books[2].strict = True
            books[3].storage, books[4].storage, books[5].old_name = "cs_path", "doc_private", True
        self.by_id: dict[str, Textbook] = {}
        self.audio_owner: dict[str, tuple[Textbook, int]] = {}
        for book in self.books:
            book.shelf = self
            self.by_id[book.id] = book
            for index in range(self.audio_count(book)):
                self.audio_owner[self.audio_id(book, index)] = (book, index)

    # --------------------------------------------------------------- building the list

    def _captured_blueprint(self, folder: Path) -> dict:
        version_bytes = (folder / "data_version.json").read_bytes()
        version = json.loads(version_bytes)
        part_urls = [u for u in version["urls"].split(",") if u]
        tag_tree_bytes = (folder / "tch_material_tag.json").read_bytes()
        root_tag_path = json.loads(tag_tree_bytes).get("tag_path", "")
        captured = (folder / "part_103.json").read_bytes()
        captured_entries = json.loads(captured)
        names = {tag["tag_id"]: tag["tag_name"] for e in captured_entries for tag in e["tag_list"]}
        leaves = tag_trees.leaves(json.loads(tag_tree_bytes), names)
        numbers = [int(u.rsplit("_", 1)[1].split(".")[0]) for u in part_urls]
        generated_numbers = [n for n in numbers if n != 103]
        todo = CAPTURED_TOTAL - len(captured_entries)
        parts, counter = {}, 0
        for i, n in enumerate(generated_numbers):
            count = todo // len(generated_numbers) + (1 if i < todo % len(generated_numbers) else 0)
            parts[n] = [_encode(self._generated_entry(leaves, counter + k, root_tag_path))
                        for k in range(count)]
            counter += count
        parts[103] = [_encode(e) for e in captured_entries]
        return {"version_bytes": version_bytes, "module_version": version["module_version"],
                "part_urls": part_urls, "tag_tree_bytes": tag_tree_bytes,
                "verbatim": {103: captured}, "parts": parts, "order": numbers}

    def _generated_blueprint(self) -> dict:
        tag_tree, names = tag_trees.generated_tag_tree(self.seed, self.small)
        root_tag_path = tag_tree["tag_path"]
        leaves = tag_trees.leaves(tag_tree, names)
        total, numbers = (26, [100, 101]) if self.small else (3800, [100, 101, 102, 103])
        parts, counter = {}, 0
        for i, n in enumerate(numbers):
            count = total // len(numbers) + (1 if i < total % len(numbers) else 0)
            parts[n] = [_encode(self._generated_entry(leaves, counter + k, root_tag_path))
                        for k in range(count)]
            counter += count
        parts[numbers[-1]] += [_encode(e) for e in self._generated_bundle(root_tag_path)]
        module_version = rng_for(self.seed, "tch-version").randrange(10**8, 10**9)
        hosts = ("s-file-2", "s-file-1")
        part_urls = [PART_URL.format(host=hosts[i % 2], n=n) for i, n in enumerate(numbers)]
        return {"version_bytes": _version_json(module_version, part_urls),
                "module_version": module_version, "part_urls": part_urls,
                "tag_tree_bytes": json.dumps(tag_tree, ensure_ascii=False).encode("utf-8"),
                "verbatim": {}, "parts": parts, "order": numbers}

    def _generated_entry(self, leaves: list, index: int, root_tag_path: str) -> dict:
        path, volume = leaves[index % len(leaves)]
        rng = rng_for(self.seed, "gen-book", index)
        book_id = make_uuid(self.seed, "textbook", index)
        names = {dim: name for _, name, dim in path}
        stage, subject = names.get("zxxxd", ""), names.get("zxxxk", "")
        grade, category = names.get("zxxnj", ""), names.get("zxxlb", "")
        volume_name = volume[1] if volume else ""
        if "高中" in stage:
            volume_name = volume_name or HIGH_SCHOOL_VOLUMES[(index // len(leaves)) % 4]
            title = f"普通高中教科书·{subject}{volume_name}"
        elif category:
            title = f"义务教育{category}实验教科书·{subject}{grade}{volume_name}"
        else:
            title = f"义务教育教科书·{subject}{grade}{volume_name}"
        if index // len(leaves) % 2 == 0 and ("小学" in stage or "初中" in stage):
            title = REVISED + title
        created, updated, _ = time_pair(rng)
        size = int(math.exp(rng.gauss(math.log(20e6), 0.55)))     # §8: median ≈ 20 MB
        size = max(4_700_000, min(size, 411_000_000))
        if self.small:
            size = rng.randint(20_000, 80_000)
        pages = rng.randint(60, 260)
        stamp = ms_stamp(rng)
        base = f"/edu_product/esp/assets/{book_id}.t/zh-CN/{stamp}/transcode/image"
        preview = {f"Slide{p}": f"https://{PUBLIC_HOSTS[rng.randrange(3)]}{base}/{p}.jpg"
                   for p in range(1, min(pages, rng.randint(10, 30)) + 1)}
        tags = [{"tag_id": tag_id, "tag_name": name, "tag_dimension_id": dim,
                 "order_num": rng.randrange(400)} for tag_id, name, dim in path]
        ids = [tag_id for tag_id, _, _ in path]
        if volume:
            tags.append({"tag_id": volume[0], "tag_name": volume[1], "tag_dimension_id": "zxxcc",
                         "order_num": rng.randrange(200, 1100)})
            ids.append(volume[0])
        edition = names.get("zxxbb", "")
        publisher = PUBLISHERS.get(edition, edition.replace("版", "") + "出版社" if edition else "")
        width, height = rng.choice(((1444, 1013), (811, 1138), (1181, 1654), (842, 1191)))
        entry = {
            "id": book_id, "global_title": {"zh-CN": title}, "global_description": {},
            "global_keywords": {}, "global_label": {},
            "custom_properties": {
                "preview": preview, "auto_fill_thumb": False, "audit_status": "AUDIT_WAITING",
                "sys_resource_space": int(size * rng.uniform(1.2, 9)),
                "resolution": f"{width}*{height}", "global_summary": {}, "height": str(height),
                "sys_trans_status": "TRANSCODED", "format": "pdf",
                "thumbnail_audit_status": "AUDIT_WAITING", "size": size, "width": str(width),
                "global_resource_id": book_id,
                "thumbnails": [(f"https://{PUBLIC_HOSTS[rng.randrange(3)]}/edu_product/esp/assets/"
                                f"{book_id}.pkg/thumbnails/{grade or subject}_{stamp - 4000}.png")]},
            "resource_type_code": "assets_document", "creator": "452315580589",
            "language": "zh-CN", "create_time": created, "update_time": updated,
            "tag_list": tags, "status": "ONLINE",
            "create_container_id": "cb9a4539-848a-453f-8205-39230f157a7d",
            "resource_type_code_name": "文档", "ti_items": [],
            "resource_custom_properties": {
                "version_visible": "RELEASE", "ppt_sort": rng.randrange(10**6, 3 * 10**6),
                "audit_status": "AUDIT_WAITING", "resource_source": "CREATE", "is_top": 0,
                "compound_node": "normal", "thumbnail_audit_status": "AUDIT_WAITING"},
            "online_time": updated, "chapter_ids": [], "chapter_paths": [],
            "teachmeterial_ids": [], "tag_paths": [f"{root_tag_path}/" + "/".join(ids)],
            "container_id": "cb9a4539-848a-453f-8205-39230f157a7d", "tenant_id": "1",
            "resource_structure": {"chapter_tree": {}}, "version_id": book_id, "title": title,
            "provider_list": ([{"name": publisher, "id": make_uuid(self.seed, "pub", publisher),
                                "type": "provider"}] if publisher else []),
        }
        if rng.random() < 0.7:       # quirk: description missing on some entries
            entry["description"] = ""
        return entry

    def _generated_bundle(self, root_tag_path: str) -> list[dict]:
        """A thematic_course parent with two sub entries (体育与健康 teacher books)."""
        entry = self._generated_entry(tag_trees.SPORT_LEAF, 10**6, root_tag_path)
        entry["resource_type_code"], entry["resource_type_code_name"] = "thematic_course", "专题课"
        entry["resource_custom_properties"]["compound_node"] = "parent"
        entry["custom_properties"].pop("preview")
        entry["custom_properties"].pop("size")
        out = [entry]
        for k, sport in enumerate(("篮球运动", "足球运动")):
            child = self._generated_entry(tag_trees.SPORT_LEAF, 10**6 + 1 + k, root_tag_path)
            child["title"] = child["global_title"]["zh-CN"] = \
                f"{REVISED}义务教育教科书• 体育与健康教师用书 {sport}（全一册）"
            child["resource_custom_properties"]["compound_node"] = "sub"
            child["tag_list"], child["tag_paths"] = [], []
            node = make_uuid(self.seed, "bundle-node", k)
            child["teachmeterial_ids"], child["chapter_ids"] = [entry["id"]], [node]
            child["chapter_paths"] = [node]
            child["resource_structure"] = {"chapter_tree": {entry["id"]: [node]}}
            out.append(child)
        return out

    # ------------------------------------------------------------------------ serving

    def part_bytes(self, n: int) -> bytes | None:
        if n not in self.parts:
            return None
        if n in self._verbatim:
            return self._verbatim[n]
        return b"[" + b",".join(book.entry_bytes for book in self.parts[n]) + b"]"

    def touch(self, book: Textbook) -> None:
        """A new edition of the book: new file name and bytes, newer update_time, and a new
        module_version (what incremental sync must notice)."""
        book.revision += 1
        book.file_stamp += 86_400_000
        book._file_map = None
        entry = book.entry()
        book.update_time = entry["update_time"] = iso_time(BASE_EPOCH + book.revision * 86400)
        book.entry_bytes = json.dumps(entry, ensure_ascii=False).encode("utf-8")
        self._verbatim.pop(book.part, None)
        self.module_version += 1
        self.version_bytes = _version_json(self.module_version, self.part_urls)

    def files(self, book: Textbook) -> dict[str, FileEntry]:
        """The book's private files by decoded path (built once per revision)."""
        if book._file_map is not None:
            return book._file_map
        files: dict[str, FileEntry] = {}
        if not book.has_pdf:
            book._file_map = files
            return files
        modified = _epoch(book.update_time)
        key = f"{book.id}:{book.revision}"
        files[book.pdf_path] = FileEntry(
            book.pdf_path, self.streams.body("pdf", book.pdf_size, key), "pdf",
            strict=book.strict, last_modified=modified, owner=book.id)
        _, leaves = tree(self.seed, book.id, self.small)
        pages = max(2, book.pages)
        mapping = {"ebook_id": book.id, "mappings": [
            {"node_id": leaf.node_id, "page_number": 1 + i * max(1, pages // (len(leaves) + 1))}
            for i, leaf in enumerate(leaves)]}
        files[book.mapping_path] = FileEntry(
            book.mapping_path, LiteralBody(json.dumps(mapping).encode()), "txt",
            strict=book.strict, last_modified=modified, owner=book.id)
        for index in range(self.audio_count(book)):
            for entry in self._audio_files(book, index):
                files[entry.path] = entry
        book._file_map = files
        return files

    def detail(self, book: Textbook) -> dict:
        entry = book.entry()
        if book.has_pdf:
            entry["ti_items"] = self.ti_items(book)
        return entry

    def ti_items(self, book: Textbook) -> list[dict]:
        pdf = self.files(book)[book.pdf_path]
        mapping = self.files(book)[book.mapping_path]
        storages = [] if book.storage == "cs_path" else book.pdf_urls
        page_one = public_image(self.streams, self.small, book.image_dir + "/1.jpg")
        width, height = 1444, 1013
        return [
            {"ti_file_flag": "image", "ti_is_source_file": False, "ti_format": "folder",
             "lc_ti_format": "folder", "ti_size": 0, "ti_md5": "",
             "ti_storage": "cs_path:${ref-path}" + book.image_dir,
             "ti_storages": mirrors(book.image_dir)},
            {"ti_file_flag": "source", "ti_is_source_file": True, "ti_format": "pdf",
             "lc_ti_format": "application/pdf", "ti_size": pdf.size, "ti_md5": pdf.md5,
             "ti_printable": True, "language": "zh-CN",
             "ti_storage": "cs_path:${ref-path}" + book.pdf_path, "ti_storages": storages,
             "custom_properties": {"identification": "", "requirements": [
                 {"name": "width", "type": "QUOTA", "value": str(width)},
                 {"name": "height", "type": "QUOTA", "value": str(height)},
                 {"name": "pagesize", "type": "QUOTA", "value": str(book.pages)},
                 {"name": "FileSize", "type": "QUOTA", "value": str(pdf.size)},
                 {"name": "displaymode", "type": "QUOTA", "value": "1"}]}},
            {"ti_file_flag": "ebook_mapping", "ti_is_source_file": False, "ti_format": "txt",
             "lc_ti_format": "text/plain", "ti_size": mapping.size, "ti_md5": mapping.md5,
             "ti_storage": "cs_path:${ref-path}" + book.mapping_path,
             "ti_storages": mirrors(book.mapping_path)},
            {"ti_file_flag": "thumbnail", "ti_is_source_file": False, "ti_format": "jpg",
             "lc_ti_format": "image/jpg", "ti_size": page_one.size, "ti_md5": page_one.md5,
             "ti_storages": mirrors(page_one.path)},
        ]

    # ---------------------------------------------------------------- bundles, audio

    def children(self, parent: Textbook) -> list[Textbook]:
        return [b for b in self.books if b.parent_id == parent.id]

    def audio_count(self, book: Textbook) -> int:
        return (2 if self.small else 6) if book.has_audio else 0

    def audio_id(self, book: Textbook, index: int) -> str:
        return make_uuid(self.seed, "audio", book.id, index)

    def _audio_paths(self, book: Textbook, index: int) -> tuple[str, str]:
        audio_id = self.audio_id(book, index)
        mp3 = (f"/edu_product/esp/assets/{audio_id}.t/zh-CN/{book.file_stamp}/transcode/audio/"
               f"{index + 1}.mp3")
        return f"/edu_product/esp/assets/{audio_id}.pkg/audio_{index + 1}.wav", mp3

    def _audio_files(self, book: Textbook, index: int) -> list[FileEntry]:
        wav, mp3 = self._audio_paths(book, index)
        rng = rng_for(self.seed, "audio", book.id, index)
        mp3_size = rng.randint(20_000, 60_000) if self.small else rng.randint(800_000, 3_000_000)
        owner = self.audio_id(book, index)
        return [FileEntry(wav, self.streams.body("wav", mp3_size * 5, f"{owner}:wav"), "wav",
                          owner=owner, last_modified=_epoch(book.update_time)),
                FileEntry(mp3, self.streams.body("mp3", mp3_size, f"{owner}:mp3"), "mp3",
                          owner=owner, last_modified=_epoch(book.update_time))]

    def relation_audios(self, book: Textbook) -> list[dict]:
        files = self.files(book)
        out = []
        for index in range(self.audio_count(book)):
            wav, mp3 = (files[p] for p in self._audio_paths(book, index))
            audio_id = self.audio_id(book, index)
            title = f"{index + 1} Unit {index // 2 + 1} Section {'AB'[index % 2]} Activity 1"
            out.append({
                "id": audio_id, "title": title, "global_title": {"zh-CN": title},
                "resource_type_code": "assets_audio", "language": "zh-CN", "status": "ONLINE",
                "update_time": book.update_time,
                "custom_properties": {"format": "mp3", "size": mp3.size},
                "ti_items": [
                    {"ti_file_flag": "source", "ti_is_source_file": True, "ti_format": "wav",
                     "lc_ti_format": "audio/wav", "ti_size": wav.size, "ti_md5": wav.md5,
                     "ti_storages": mirrors(wav.path)},
                    {"ti_file_flag": "href", "ti_is_source_file": False, "ti_format": "mp3",
                     "lc_ti_format": "audio/mp3", "ti_size": mp3.size, "ti_md5": mp3.md5,
                     "ti_storages": mirrors(mp3.path)}]})
        return out


_BLUEPRINTS: dict[tuple, dict] = {}


def _encode(entry: dict) -> bytes:
    return json.dumps(entry, ensure_ascii=False).encode("utf-8")


def _version_json(module_version: int, part_urls: list[str]) -> bytes:
    return json.dumps({"module": "tch_material", "module_version": module_version,
                       "urls": ",".join(part_urls)}).encode("utf-8")


def _epoch(stamp: str) -> float:
    from datetime import datetime
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return BASE_EPOCH
