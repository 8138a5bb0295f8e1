"""The data package's public names resolve to one object wherever they are imported from, and its modules
stay small (the store and the jobs are split by concern)."""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest

import fourm_core.data as data

STORE_NAMES = ["CROP_FIELDS", "DEFAULT_RAW_SIZE", "DEFAULT_SAMPLES_PER_SHARD", "FORMAT_VERSION", "CorruptDataError",
               "FormatVersionError", "IncompleteDataError", "Store", "StoreError", "is_text_array", "roundtrip_raw",
               "storage_shape"]
JOB_NAMES = ["IMAGE_EXTENSIONS", "IngestReport", "JobReport", "damage_error", "find_images", "format_inspect",
             "ingest", "inspect_store", "label", "repair_store", "tokenize"]


@pytest.mark.parametrize("name", sorted(data._EXPORTS))
def test_every_lazy_export_resolves_to_the_object_of_its_home_module(name):
    home = importlib.import_module(f"fourm_core.data.{data._EXPORTS[name]}")
    assert getattr(data, name) is getattr(home, name)
    assert not isinstance(getattr(data, name), types.ModuleType)  # never a submodule of the same name


@pytest.mark.parametrize(("module", "names"), [("store", STORE_NAMES), ("jobs", JOB_NAMES)])
def test_store_and_jobs_still_export_their_public_names(module, names):
    mod = importlib.import_module(f"fourm_core.data.{module}")
    assert sorted(mod.__all__) == sorted(names)
    for name in names:
        obj = getattr(mod, name)
        if name in data._EXPORTS:
            assert obj is getattr(data, name)


def test_data_modules_stay_under_400_lines():
    folder = Path(data.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"store.py", "shards.py", "raw.py", "jobs.py", "jobkit.py"} <= set(sizes)
    assert {n: s for n, s in sizes.items() if s > 400} == {}
