"""pipelines.stores: FILES_STORE picks its store by scheme; the local store moves staged files into place."""

import pytest

from pipelines.stores import FSFilesStore, open_store


def test_a_path_or_file_uri_is_the_local_store(tmp_path):
    for uri in (str(tmp_path / "videos"), (tmp_path / "videos").as_uri()):
        store = open_store(uri)
        assert isinstance(store, FSFilesStore) and store.basedir == tmp_path / "videos"
    staged = store.staging_dir() / "x.part"
    staged.write_bytes(b"bytes")
    location = store.persist(staged, "full/abc.mp4")
    assert location == str(tmp_path / "videos" / "full" / "abc.mp4") and not staged.exists()
    assert store.local_path(location).read_bytes() == b"bytes"


def test_a_scheme_without_a_store_is_refused_at_start():
    with pytest.raises(ValueError, match="no store for ftp://"):
        open_store("ftp://bucket/videos")  # s3:// and gs://: tests/pipelines/test_stores_s3.py
    with pytest.raises(ValueError, match="FILES_STORE must be set"):
        open_store("")
