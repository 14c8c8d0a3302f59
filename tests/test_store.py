"""The content-addressed blob store: verified, atomic writes."""

from __future__ import annotations

import hashlib
import io

import pytest

from cache.store import BlobError, BlobStore, validate_digest


def test_put_and_read_back(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    data = b"hello \xe4\xb9\xa6\xe6\xa1\xa5" * 1000
    digest = store.put_stream(io.BytesIO(data))
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.path(digest)
    assert path.parent.name == digest[:2] and path.parent.parent.name == "sha256"
    assert path.read_bytes() == data
    assert store.verify(digest)
    assert list(store.digests()) == [digest]


def test_wrong_hash_or_size_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(BlobError, match="SHA-256"):
        store.put_stream(io.BytesIO(b"abc"), expected_sha256="0" * 64)
    with pytest.raises(BlobError, match="expected 5"):
        store.put_stream(io.BytesIO(b"abc"), expected_size=5)
    with pytest.raises(BlobError, match="declared 2"):
        store.put_stream(io.BytesIO(b"abc"), expected_size=2)
    with pytest.raises(BlobError, match="allowed"):
        with store.writer(max_bytes=2) as w:
            w.write(b"abc")
    assert list(store.digests()) == []
    assert list(store.tmp_dir.iterdir()) == []


def test_a_crash_mid_write_leaves_only_a_temporary_file_which_is_cleaned(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    writer = store.writer()
    writer.write(b"partial")  # the process dies here: no commit, no __exit__
    writer._file.close()
    assert list(store.digests()) == []
    assert store.clean_temporary() == 1
    assert list(store.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 64, "0" * 63, "0" * 65, "g" * 64,
                                 "0" * 62 + "/a", None, 5])
def test_digest_validation(bad):
    with pytest.raises(ValueError):
        validate_digest(bad)
