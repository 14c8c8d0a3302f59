"""No link at all: carry usage statements on a USB drive.

``export_usage`` (``shuqiao export-usage DIR``) writes every statement still waiting for
the LRS to ``DIR`` as two files:

- ``shuqiao-usage-<appliance>-<UTC time>.jsonl``: one frozen statement per line;
- ``….manifest.json``: format, appliance, school, statement count, byte size and SHA-256
  of the statements file. It is written last, so its presence means the export finished.

Only after both files were fsynced, dropped from the page cache, read back from the drive
and found to hash and count as the manifest says are the statements marked
``handed-off`` here. A crash or a yanked drive before that leaves them pending: the next
export writes them again, and the import side drops the duplicates by statement id.

``import_usage`` (``shuqiao import-usage DIR``) on a connected appliance (at the county
office, say) checks each manifest's file (size, hash, count, every line a statement
with an id), queues the statements in its own outbox exactly as written, and uploads
them if ``lrs_url`` is set (else the background uploader sends them later). A file
already imported is skipped, and a statement already known is not queued again, so
importing twice sends nothing new; the LRS would ignore resends anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .outbox import now_iso
from .upload import Echo, compile_pending, pending_left, sync_once
from .xapi import Identity

FORMAT = "shuqiao-usage-statements"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
MAX_LINE = 1024 * 1024


class UsbError(RuntimeError):
    """The export or import cannot be done; the message says why (for the CLI)."""


@dataclass
class ExportResult:
    path: Path | None
    manifest: Path | None
    statements: int
    sha256: str = ""


@dataclass
class ImportResult:
    files: int
    skipped: int
    statements: int
    new: int
    pending_left: int


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, chunks) -> tuple[int, str]:
    """Write to ``path.part``, fsync, rename, fsync the directory; returns (bytes, sha256)."""
    temporary = path.with_name(path.name + ".part")
    digest, size = hashlib.sha256(), 0
    with open(temporary, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)
    return size, digest.hexdigest()


def _read_back(path: Path) -> tuple[int, str, bytes]:
    """Read a file as the drive has it: drop it from the page cache first, so the bytes
    come from the device, not from memory (best effort where fadvise is missing)."""
    with open(path, "rb") as handle:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        data = handle.read()
    return len(data), hashlib.sha256(data).hexdigest(), data


def export_usage(config, usage, directory, echo: Echo = print) -> ExportResult:
    """Write the undelivered statements to ``directory``; mark them handed off once the
    files are complete and verified."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsbError(f"{directory} is not a directory (is the drive mounted?)")
    identity = Identity.from_config(config)
    with usage.outbox() as outbox:
        compile_pending(config, outbox, identity)
        rows = outbox.db.execute("SELECT id, body FROM statements WHERE state = 'pending'"
                                 " ORDER BY seq").fetchall()
        if not rows:
            echo("没有待导出的记录 / nothing to export: every statement is delivered or "
                 "handed off")
            return ExportResult(None, None, 0)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"shuqiao-usage-{identity.instance_id[:12]}-{stamp}.jsonl"
        path = directory / name
        try:
            size, digest = _write_durably(path, ((body + "\n").encode() for _, body in rows))
            manifest = {
                "format": FORMAT, "version": FORMAT_VERSION, "file": name,
                "statements": len(rows), "bytes": size, "sha256": digest,
                "instance": identity.instance_id, "school": identity.school_name,
                "school_code": identity.school_code, "created": now_iso(),
            }
            manifest_path = directory / (name[:-len(".jsonl")] + MANIFEST_SUFFIX)
            manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
            _write_durably(manifest_path, [manifest_bytes])
            _verify(path, manifest_path, manifest, [sid for sid, _ in rows])
        except OSError as error:
            raise UsbError(f"cannot write to {directory}: {error.strerror or error}") from None
        ids = [sid for sid, _ in rows]
        outbox.mark(ids, "handed-off", handoff=name)
        with outbox.db.atomic():
            outbox.db.execute("INSERT INTO exports (name, sha256, statements, directory,"
                              " exported_at) VALUES (?, ?, ?, ?, ?)",
                              [name, digest, len(rows), str(directory), now_iso()])
    echo(f"已导出 {len(rows)} 条到 {path} / exported {len(rows)} statements to {path}")
    return ExportResult(path, manifest_path, len(rows), digest)


def _verify(path: Path, manifest_path: Path, manifest: dict, ids: list[str]) -> None:
    size, digest, data = _read_back(path)
    if size != manifest["bytes"] or digest != manifest["sha256"]:
        raise UsbError(f"{path} reads back differently from what was written (size {size} "
                       f"vs {manifest['bytes']}): the drive may be failing; nothing was "
                       "marked as handed off")
    lines = data.decode().splitlines()
    if [json.loads(line)["id"] for line in lines] != ids:
        raise UsbError(f"{path} does not hold the statements written; nothing marked")
    _, _, written = _read_back(manifest_path)
    if json.loads(written) != manifest:
        raise UsbError(f"{manifest_path} reads back differently; nothing marked")


def _read_export(manifest_path: Path) -> tuple[dict, list[tuple[str, str]], str]:
    """A manifest and its statements, checked: (manifest, [(id, body)], sha256)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsbError(f"{manifest_path.name}: not a readable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsbError(f"{manifest_path.name}: not a Shuqiao usage export")
    if manifest.get("version") != FORMAT_VERSION:
        raise UsbError(f"{manifest_path.name}: format version {manifest.get('version')} is "
                       f"not supported (this program reads {FORMAT_VERSION})")
    name = str(manifest.get("file", ""))
    if Path(name).name != name or not name.endswith(".jsonl"):
        raise UsbError(f"{manifest_path.name}: bad file name {name!r}")
    path = manifest_path.parent / name
    try:
        size, digest, data = _read_back(path)
    except OSError as error:
        raise UsbError(f"{name}: cannot be read ({error.strerror})") from None
    if size != manifest.get("bytes") or digest != manifest.get("sha256"):
        raise UsbError(f"{name}: size or SHA-256 differs from its manifest (the copy is "
                       "damaged or incomplete); nothing imported from it")
    statements = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if len(line) > MAX_LINE:
            raise UsbError(f"{name} line {number}: longer than {MAX_LINE} bytes")
        try:
            statement = json.loads(line)
            sid = str(uuid.UUID(statement["id"]))
            if not all(k in statement for k in ("actor", "verb", "object")):
                raise KeyError("actor/verb/object")
        except (ValueError, KeyError, TypeError) as error:
            raise UsbError(f"{name} line {number}: not an xAPI statement ({error})") from None
        statements.append((sid, line))
    if len(statements) != manifest.get("statements"):
        raise UsbError(f"{name}: {len(statements)} statements, manifest says "
                       f"{manifest.get('statements')}")
    return manifest, statements, digest


def import_usage(config, usage, directory, echo: Echo = print, *, upload: bool = True
                 ) -> ImportResult:
    """Queue the statements of every export in ``directory`` and forward them."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsbError(f"{directory} is not a directory (is the drive mounted?)")
    manifests = sorted(directory.glob("*" + MANIFEST_SUFFIX))
    if not manifests:
        raise UsbError(f"no Shuqiao usage export (*{MANIFEST_SUFFIX}) in {directory}")
    result = ImportResult(0, 0, 0, 0, 0)
    with usage.outbox() as outbox:
        for manifest_path in manifests:
            manifest, statements, digest = _read_export(manifest_path)
            if outbox.db.execute("SELECT 1 FROM imports WHERE sha256 = ?", [digest]).fetchone():
                echo(f"已导入过，跳过 / already imported, skipped: {manifest['file']}")
                result.skipped += 1
                continue
            known = _known(outbox, [sid for sid, _ in statements])
            with outbox.db.atomic():   # the statements and the file's record together
                new = outbox.add_statements([(sid, body, "import") for sid, body in statements])
                outbox.db.execute(
                    "INSERT INTO imports (sha256, name, instance, statements, new, imported_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [digest, manifest["file"], str(manifest.get("instance", "")),
                     len(statements), new, now_iso()])
            # Our own export carried back: it goes to the LRS from here after all.
            back = [sid for sid, state in known.items() if state == "handed-off"]
            if back:
                outbox.mark(back, "pending")
            result.files += 1
            result.statements += len(statements)
            result.new += new + len(back)
            echo(f"导入 {manifest['file']}：{len(statements)} 条，新 {new + len(back)} 条 / "
                 f"imported {len(statements)} statements, {new + len(back)} new "
                 f"(from {manifest.get('school') or manifest.get('instance')})")
        result.pending_left = pending_left(config, outbox)
    if upload and config.lrs_url and result.pending_left:
        result.pending_left = sync_once(config, usage, echo, ignore_window=True)
    return result


def _known(outbox, ids: list[str]) -> dict[str, str]:
    known = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        known.update(outbox.db.execute(
            f"SELECT id, state FROM statements WHERE id IN ({','.join('?' * len(part))})",
            part).fetchall())
    return known
