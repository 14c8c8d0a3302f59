"""The built-in sample library: a few real-looking Chinese textbooks and a lesson package.

``cache/sample/`` holds the media (made once by ``cache/sample/generate.py``, committed, so
the demo needs no ffmpeg) and ``library.json`` describing them. :func:`load_sample_library`
puts them into a home's catalogue and blob store. It is idempotent: resources keep their
ids (derived from the manifest keys) and blobs are stored once.
"""

from __future__ import annotations

import json
from pathlib import Path

from .catalog import Catalog, CatalogError, FileSpec

SAMPLE_DIR = Path(__file__).parent / "sample"
MANIFEST = SAMPLE_DIR / "library.json"
SOURCE = "sample"
_TAXONOMY = ("description", "stage", "grade", "subject", "edition", "volume")


def _files(catalog: Catalog, entries: list[dict]) -> list[FileSpec]:
    specs = []
    for entry in entries:
        # Manifest paths are plain names inside cache/sample/; refuse anything else.
        name = entry["path"]
        if "/" in name or "\\" in name or name.startswith("."):
            raise CatalogError(f"sample manifest: bad file name {name!r}")
        path = SAMPLE_DIR / name
        digest = catalog.store.put_file(path)
        specs.append(FileSpec(role=entry["role"], mime=entry["mime"], name=name,
                              size=path.stat().st_size, sha256=digest, state="cached"))
    return specs


def load_sample_library(catalog: Catalog, manifest: Path = MANIFEST) -> list[str]:
    """Load every sample resource; returns the ids of the top-level resources."""
    library = json.loads(manifest.read_text(encoding="utf-8"))
    ids = []
    for item in library["resources"]:
        fields = {k: item.get(k, "") for k in _TAXONOMY}
        rid = catalog.upsert_resource(
            source=SOURCE, source_id=item["key"], kind=item["kind"], title=item["title"],
            chapter=item.get("chapter", []), files=_files(catalog, item.get("files", [])),
            **fields)
        lessons: dict[str, int] = {}
        for position, part in enumerate(item.get("parts", [])):
            lesson = part.get("lesson", "")
            lesson_no = lessons.setdefault(lesson, len(lessons) + 1)
            catalog.upsert_resource(
                source=SOURCE, source_id=part["key"], kind=part["kind"], title=part["title"],
                parent_id=rid, lesson=lesson, lesson_no=lesson_no, position=position,
                chapter=item.get("chapter", []), files=_files(catalog, part.get("files", [])),
                **fields)
        ids.append(rid)
    return ids
