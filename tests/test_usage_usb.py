"""No link: export the undelivered statements to a drive, import them on a connected
appliance that forwards them to a real LRS (Ralph) — verified, exact, idempotent."""

from __future__ import annotations

import json

import pytest
from ralph import event_batch, lrs_settings, sample_appliance, start_or_skip

from sync import xapi
from sync.upload import sync_once
from sync.usb import UsbError, export_usage, import_usage


@pytest.fixture(scope="module")
def lrs(tmp_path_factory):
    server = start_or_skip(tmp_path_factory.mktemp("ralph"))
    yield server
    server.stop()


def quiet(_line: str) -> None:
    pass


def school(tmp_path, n):
    """A school appliance with no link at all (no lrs_url) and ``n`` events."""
    app, ctx, rids = sample_appliance(tmp_path / "school", display_name="石门村小学")
    r = app.test_client().post("/api/events", json=event_batch(rids, n))
    assert r.status_code == 201
    return app, ctx, rids, r.get_json()["ids"]


def states(ctx):
    with ctx.usage.outbox() as outbox:
        return {k: v for k, v in outbox.counts().items() if v}


def test_usb_path_end_to_end(lrs, tmp_path):
    app, ctx, rids, ids = school(tmp_path, 25)
    drive = tmp_path / "usb"
    drive.mkdir()
    assert sync_once(ctx.config, ctx.usage, quiet) == 25          # no link: all pending
    result = export_usage(ctx.config, ctx.usage, drive, quiet)
    assert result.statements == 25 and result.path.exists() and result.manifest.exists()
    manifest = json.loads(result.manifest.read_text())
    assert manifest["statements"] == 25 and manifest["school"] == "石门村小学"
    assert manifest["file"] == result.path.name and manifest["sha256"] == result.sha256
    assert len(result.path.read_text().splitlines()) == 25
    assert not list(drive.glob("*.part"))
    assert states(ctx) == {"handed-off": 25, "total": 25}
    assert sync_once(ctx.config, ctx.usage, quiet) == 0             # nothing left pending
    assert export_usage(ctx.config, ctx.usage, drive, quiet).path is None  # nothing new

    # At the county office: a connected appliance forwards them.
    county_app, county, _ = sample_appliance(tmp_path / "county", **lrs_settings(lrs))
    lines = []
    imported = import_usage(county.config, county.usage, drive, lines.append)
    assert (imported.files, imported.statements, imported.new, imported.pending_left) == \
        (1, 25, 25, 0)
    identity = xapi.Identity.from_config(ctx.config)   # the school's, not the county's
    held = lrs.statements(identity.appliance_iri)
    assert sorted(s["id"] for s in held) == sorted(xapi.statement_id(identity, e) for e in ids)
    assert {s["context"]["extensions"][identity.extension("school")]["name"] for s in held} \
        == {"石门村小学"}

    # Importing the same drive again sends nothing.
    again = import_usage(county.config, county.usage, drive, lines.append)
    assert (again.files, again.skipped, again.new) == (0, 1, 0)
    assert any("already imported" in line for line in lines)
    assert len(lrs.statements(identity.appliance_iri)) == 25
    stored = [s["id"] for s in lrs.stored_lines()]
    assert len(stored) == len(set(stored))


def test_a_second_export_after_new_events_carries_only_those(lrs, tmp_path):
    app, ctx, rids, first = school(tmp_path, 4)
    drive = tmp_path / "usb"
    drive.mkdir()
    export_usage(ctx.config, ctx.usage, drive, quiet)
    more = event_batch(rids, 3, "lab-02")
    assert app.test_client().post("/api/events", json=more).status_code == 201
    second = export_usage(ctx.config, ctx.usage, drive, quiet)
    assert second.statements == 3
    county_app, county, _ = sample_appliance(tmp_path / "county", **lrs_settings(lrs))
    result = import_usage(county.config, county.usage, drive, quiet)
    assert (result.files, result.new, result.pending_left) == (2, 7, 0)
    identity = xapi.Identity.from_config(ctx.config)
    assert len(lrs.statements(identity.appliance_iri)) == 7


def test_import_without_a_link_queues_and_the_uploader_sends_later(lrs, tmp_path):
    app, ctx, rids, ids = school(tmp_path, 5)
    drive = tmp_path / "usb"
    drive.mkdir()
    export_usage(ctx.config, ctx.usage, drive, quiet)
    county_app, county, _ = sample_appliance(tmp_path / "county")   # no lrs_url yet
    result = import_usage(county.config, county.usage, drive, quiet)
    assert (result.new, result.pending_left) == (5, 5)
    county.config.values.update(lrs_settings(lrs))
    assert sync_once(county.config, county.usage, quiet) == 0
    identity = xapi.Identity.from_config(ctx.config)
    assert len(lrs.statements(identity.appliance_iri)) == 5


def test_a_damaged_copy_is_refused_and_nothing_is_queued(tmp_path):
    app, ctx, rids, ids = school(tmp_path, 6)
    drive = tmp_path / "usb"
    drive.mkdir()
    result = export_usage(ctx.config, ctx.usage, drive, quiet)
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    result.path.write_bytes(bytes(data))
    county_app, county, _ = sample_appliance(tmp_path / "county")
    with pytest.raises(UsbError, match="SHA-256 differs"):
        import_usage(county.config, county.usage, drive, quiet)
    with county.usage.outbox() as outbox:
        assert outbox.statement_counts()["pending"] == 0


def test_own_export_carried_back_goes_upstream_from_here(lrs, tmp_path):
    """A drive that never reached the county: once this appliance has a link, importing
    its own export puts the handed-off statements back in its queue."""
    app, ctx, rids, ids = school(tmp_path, 3)
    drive = tmp_path / "usb"
    drive.mkdir()
    export_usage(ctx.config, ctx.usage, drive, quiet)
    ctx.config.values.update(lrs_settings(lrs))
    result = import_usage(ctx.config, ctx.usage, drive, quiet)
    assert (result.new, result.pending_left) == (3, 0)
    assert states(ctx) == {"delivered": 3, "total": 3}


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no Shuqiao usage export"),
    (lambda d: (d / "x.manifest.json").write_text("{}"), "not a Shuqiao usage export"),
    (lambda d: (d / "x.manifest.json").write_text(json.dumps(
        {"format": "shuqiao-usage-statements", "version": 1, "file": "../../etc/passwd"})),
     "bad file name"),
    (lambda d: (d / "x.manifest.json").write_text("not json"), "not a readable manifest"),
])
def test_bad_drives_are_explained(tmp_path, setup, message):
    app, ctx, rids = sample_appliance(tmp_path / "county")
    drive = tmp_path / "usb"
    drive.mkdir()
    setup(drive)
    with pytest.raises(UsbError, match=message):
        import_usage(ctx.config, ctx.usage, drive, quiet)


def test_export_to_a_missing_drive_marks_nothing(tmp_path):
    app, ctx, rids, ids = school(tmp_path, 2)
    with pytest.raises(UsbError, match="not a directory"):
        export_usage(ctx.config, ctx.usage, tmp_path / "not-mounted", quiet)
    assert states(ctx) == {"pending": 2, "total": 2}
