"""What the data jobs record beside the data, checked in-process (mutation testing showed these untested:
the CLI tests exercise the same code only inside subprocesses, which a mutation tool cannot see)."""

from __future__ import annotations

import pytest

from data_helpers import PER_SHARD, RAW_SIZE

from fourm_core.data import Store, inspect_store, ingest


def test_ingest_of_only_unreadable_files_names_the_count_and_first_error(tmp_path, registry):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    from fourm_core.data.store import StoreError

    with pytest.raises(StoreError) as err:
        ingest(src, str(tmp_path / "s.zarr"), samples_per_shard=PER_SHARD, raw_size=RAW_SIZE, registry=registry,
               progress=False)
    msg = str(err.value)
    assert "none of the 2 images" in msg and str(src) in msg
    assert "first error:" in msg and "Error" in msg.split("first error:")[1]  # the decoder's exception type


def test_label_records_the_weights_it_ran_with(tmp_path, ingested, registry, tinynet_weights):
    # labels its own store (not the session's full_store): a mutation tool attributes what a session fixture
    # runs to the first test that built it, so this check would never run against a mutant of label()
    import shutil

    from fourm_core.data import label

    url = str(tmp_path / "s.zarr")
    shutil.copytree(ingested, url)
    label(url, ["feat", "edges"], weights={"feat": tinynet_weights}, registry=registry, progress=False)
    meta = Store.open(url).modalities()
    assert meta["feat"]["weights"] == tinynet_weights
    assert meta["edges"].get("weights") is None  # a weight-free labeler records none


def test_inspect_reports_the_crops_of_a_tokenized_store(full_store):
    info = inspect_store(full_store)
    crops = info["crops"]
    assert crops["num_crops"] == 2
    assert crops["complete"] == info["num_samples"]
    assert crops["shape"] == [2, 5] and crops["dtype"] == "int32"
    assert len(crops["sha256"]) == 64
