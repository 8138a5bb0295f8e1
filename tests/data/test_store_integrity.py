"""A store that was killed, torn, shared or fed garbage never lies: each test reproduces one failure a user hit
(a deleted shard object read back as zeros, a torn array creation, two writers, a resume with another model)
on a real store on disk, and checks the error names the store, the array and the command that repairs it, and
that the repair path leads back to the values of an untouched run."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import PER_SHARD, RAW_SIZE, copy_store, run_fourm

from fourm_core.data import CorruptDataError, Store, StoreError, inspect_store, label, tokenize
from fourm_core.data.lock import StoreLockedError, WriterLock
from fourm_registry import ModalitySpec, StorageSpec

NUM = 8


def _shard_file(url: str, path: str, shard: int) -> Path:
    arr = Store.open(url)._array(path)  # noqa: SLF001
    return Path(url, path, "c", str(shard), *(["0"] * (arr.ndim - 1)))


def _modality_info(url: str, name: str) -> dict:
    return {k: v for k, v in inspect_store(url)["modalities"][name].items() if k != "tokens"}


# --------------------------------------------------------------------------------------------------
# 1. a missing shard object is detected, reported by inspect (exit 2), repaired and redone
@pytest.mark.parametrize("name, shard", [("stats", 2), ("edges", 3)])
def test_deleted_shard_object_is_detected_repaired_and_redone(full_store, tmp_path, registry, name, shard):
    """Catches a store that reads a deleted shard object back as fill values (zeros, empty JSON) and an inspect
    that still calls it complete."""
    from fourm_core.data.jobs import damage_error, repair_store

    run = copy_store(full_store, tmp_path / "s.zarr")
    _shard_file(run, f"{name}/raw", shard).unlink()
    with pytest.raises(CorruptDataError, match=rf"array '{name}/raw' is missing the stored object of shard {shard}"):
        Store.open(run).read_raw(name, [shard * PER_SHARD])
    problems = inspect_store(run)["problems"]
    assert [(p["array"], p["shard"]) for p in problems] == [(f"{name}/raw", shard)]
    assert "missing" in problems[0]["reason"]
    msg = str(damage_error(run, problems))
    assert f"shard {shard} of '{name}/raw'" in msg and "--repair" in msg
    assert f"fourm label {run} --modalities {name}" in msg
    assert [p["shard"] for p in repair_store(run)["repaired"]] == [shard]
    assert not Store.open(run).is_done(name, "raw", shard)
    rep = label(run, [name], registry=registry, progress=False)[name]
    assert (rep.shards_done, rep.shards_skipped) == (1, NUM // PER_SHARD - 1)
    info = inspect_store(run)
    assert info["problems"] == [] and info["verified_shards"] > 0
    assert _modality_info(run, name) == _modality_info(full_store, name)


def test_deleted_rgb_shard_through_the_commands(full_store, photos, tmp_path, registry):
    """The same as a user meets it: ``fourm inspect`` exits 2 with one ``error:`` line naming the shard and the
    repair, ``--repair`` un-marks the shard, rerunning the same ingest redoes it, and inspect is clean again."""
    from fourm_core.data import ingest
    from fourm_core.data.jobs import format_inspect, repair_store

    run = copy_store(full_store, tmp_path / "s.zarr")
    _shard_file(run, "rgb/raw", 1).unlink()
    res = run_fourm("inspect", run)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "DAMAGED rgb/raw shard 1" in res.stdout and "is missing" in res.stdout
    assert res.stderr.startswith("error: ") and "--repair" in res.stderr and len(res.stderr.splitlines()) == 1
    assert "REPAIRED rgb/raw shard 1" in format_inspect(repair_store(run))  # what `fourm inspect --repair` prints
    rep = ingest(photos, run, samples_per_shard=PER_SHARD, raw_size=RAW_SIZE, registry=registry, progress=False)
    assert rep.num_samples == NUM
    info = inspect_store(run)
    assert info["problems"] == [] and _modality_info(run, "rgb") == _modality_info(full_store, "rgb")


def test_replaced_shard_and_truncated_shard_are_reported(full_store, tmp_path):
    """Catches an inspect that trusts checksums alone: a shard object swapped for another valid one (checksums
    pass, values wrong) and one cut short are both damaged; the other shards are not blamed."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    a, b = _shard_file(run, "edges/tokens", 0), _shard_file(run, "edges/tokens", 1)
    a.write_bytes(b.read_bytes())
    f = _shard_file(run, "feat/raw", 2)
    f.write_bytes(f.read_bytes()[:-7])
    problems = {(p["array"], p["shard"]): p["reason"] for p in inspect_store(run)["problems"]}
    assert set(problems) == {("edges/tokens", 0), ("feat/raw", 2)}, problems
    assert "values differ" in problems[("edges/tokens", 0)] and "bytes" in problems[("feat/raw", 2)]


# --------------------------------------------------------------------------------------------------
# 3. array creation survives a kill between an array and its completion record / attributes
def _killed_in_a_fork(kill_at: str, job, *args, **kwargs) -> int:
    def target():
        os.environ["FOURM_TEST_KILL_AT"] = kill_at
        job(*args, **kwargs)

    proc = mp.get_context("fork").Process(target=target)
    proc.start()
    proc.join(timeout=300)
    return proc.exitcode


@pytest.mark.parametrize("path", ["edges/tokens", "_crops/params"])
def test_tokenize_killed_while_creating_an_array_resumes(full_store, tmp_path, tokenizer_dir, registry, path):
    """Catches a store left unusable by a kill between an array and its completion record ("has no array ...
    run the job that writes it") or its attributes ("already has 2 crops per sample (seed None)")."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    store = Store.open(run, "r+")
    store.reset_crops()
    kw = dict(crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False)
    assert _killed_in_a_fork(f"create:{path}", tokenize, run, ["edges"], **kw) == -9
    assert not Store.open(run).has("edges", "tokens")
    assert WriterLock.holder(run) is not None  # the killed job's stale lock is taken over below
    rep = tokenize(run, ["edges"], **kw)["edges"]
    assert (rep.shards_done, rep.shards_skipped) == (NUM // PER_SHARD, 0)
    ref = Store.open(full_store)
    assert np.array_equal(Store.open(run).read_tokens("edges", range(NUM)), ref.read_tokens("edges", range(NUM)))
    assert np.array_equal(Store.open(run).read_crops(range(NUM)), ref.read_crops(range(NUM)))


def test_arrays_torn_by_an_older_writer_are_recovered(full_store, tmp_path, tokenizer_dir, registry):
    """The states the old creation order left (data array without its completion record; crop parameters
    without their attributes) are recovered by the next run instead of failing it forever."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    store = Store.open(run, "r+")
    store._delete("edges/tokens_done")  # noqa: SLF001
    store._delete("edges/raw_done")  # noqa: SLF001
    crops = store._array("_crops/params")  # noqa: SLF001
    store._delete("_crops/done")  # noqa: SLF001
    crops.attrs.clear()
    rep = label(run, ["edges"], registry=registry, progress=False)["edges"]
    assert rep.shards_done == NUM // PER_SHARD
    reps = tokenize(run, ["rgbtok", "edges"], crops=2, tokenizers_dir=tokenizer_dir, registry=registry,
                    progress=False)
    assert reps["edges"].shards_done == NUM // PER_SHARD
    assert np.array_equal(Store.open(run).read_tokens("edges", range(NUM)),
                          Store.open(full_store).read_tokens("edges", range(NUM)))


# --------------------------------------------------------------------------------------------------
# 4. one writer per store; metadata of two modalities is never lost
def test_second_writer_is_refused_naming_the_holder(full_store, tmp_path, registry, tokenizer_dir):
    """Catches two jobs writing one store at once (each rewrites the root attributes from its own view, and
    --overwrite deletes arrays under the other): the second fails with one line naming the first."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from fourm_core.data.lock import WriterLock\n"
                               f"WriterLock.acquire({run!r}, 'fourm label holder')\n"
                               "print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = run_fourm("label", run, "-m", "edges", "--overwrite", "--no-progress")
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith(f"error: store {run} is being written by `fourm label holder`"), res.stderr
        assert f"pid {holder.pid}" in res.stderr and "--force" in res.stderr
        assert Store.open(run).is_complete("edges", "raw")  # nothing was deleted under the holder
        res = run_fourm("tokenize", run, "-m", "edges", "--tokenizers", tokenizer_dir, "--crops", "2",
                         "--no-progress")
        assert res.returncode == 2 and "is being written by" in res.stderr
        with pytest.raises(StoreLockedError, match="pid"):
            label(run, ["edges"], registry=registry, progress=False)
        # --force takes it over
        rep = label(run, ["edges"], registry=registry, progress=False, force=True)["edges"]
        assert rep.shards_skipped == NUM // PER_SHARD
    finally:
        holder.kill()
        holder.wait()
    assert WriterLock.holder(run) is None  # released by the job that took it over


def test_stale_lock_of_a_killed_job_is_taken_over(full_store, tmp_path, registry):
    run = copy_store(full_store, tmp_path / "s.zarr")
    dead = subprocess.run([sys.executable, "-c", "import os\nfrom fourm_core.data.lock import WriterLock\n"
                           f"WriterLock.acquire({run!r}, 'killed job')\nos.kill(os.getpid(), 9)"],
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert dead.returncode == -9
    assert WriterLock.holder(run)["job"] == "killed job"
    assert inspect_store(run)["lock"]["job"] == "killed job"
    rep = label(run, ["edges"], registry=registry, progress=False)["edges"]
    assert rep.shards_skipped == NUM // PER_SHARD and WriterLock.holder(run) is None


def test_two_handles_keep_both_modalities_records(tmp_path):
    """Catches root attributes written from a stale view: each handle's update keeps the other's."""
    url = str(tmp_path / "m.zarr")
    Store.create(url, 4, samples_per_shard=2)
    a, b = Store.open(url, "r+"), Store.open(url, "r+")
    a._set_modality_meta("depth", plugin="p-depth", weights="w1")  # noqa: SLF001
    b._set_modality_meta("normal", plugin="p-normal", weights="w2")  # noqa: SLF001
    a._set_modality_meta("depth", version="1.0")  # noqa: SLF001
    mods = Store.open(url).modalities()
    assert mods == {"depth": {"plugin": "p-depth", "weights": "w1", "version": "1.0"},
                    "normal": {"plugin": "p-normal", "weights": "w2"}}


def test_multi_modality_label_run_keeps_every_record(ingested, tmp_path, registry, tinynet_weights):
    run = copy_store(ingested, tmp_path / "s.zarr")
    label(run, ["feat", "edges", "stats"], weights={"feat": tinynet_weights}, registry=registry, progress=False)
    mods = Store.open(run).modalities()
    assert {"rgb", "edges", "stats", "feat"} <= set(mods)
    assert mods["feat"]["weights"] == tinynet_weights and mods["edges"]["plugin"] and mods["stats"]["plugin"]


# --------------------------------------------------------------------------------------------------
# 5. resume refuses another labeler / tokenizer
def _other_weights(tmp_path: Path) -> str:
    import torch
    from fourm_datatest.components import build_tinynet
    from safetensors.torch import save_file

    torch.manual_seed(1)
    path = tmp_path / "other.safetensors"
    save_file(build_tinynet().state_dict(), str(path))
    return str(path)


def test_label_resume_with_other_weights_is_refused(full_store, tmp_path, registry, tinynet_weights):
    """Catches a resumed label that writes the remaining shards with other weights (one array, two models)."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    Store.open(run, "r+").mark_done("feat", "raw", 3, False)
    other = _other_weights(tmp_path)
    with pytest.raises(StoreError, match=r"feat/raw has finished shards written by another labeler.*--overwrite"):
        label(run, ["feat"], weights={"feat": other}, registry=registry, progress=False)
    assert not Store.open(run).is_done("feat", "raw", 3)
    res = run_fourm("label", run, "-m", "feat", "--weights", f"feat={other}", "--no-progress")
    assert res.returncode == 2 and "weights" in res.stderr and "--overwrite" in res.stderr, res.stderr
    # the original weights resume; --overwrite relabels everything with the new ones
    rep = label(run, ["feat"], weights={"feat": tinynet_weights}, registry=registry, progress=False)["feat"]
    assert (rep.shards_done, rep.shards_skipped) == (1, 3)
    assert _modality_info(run, "feat") == _modality_info(full_store, "feat")
    rep = label(run, ["feat"], weights={"feat": other}, registry=registry, progress=False, overwrite=True)["feat"]
    assert rep.shards_done == 4
    assert _modality_info(run, "feat")["sha256"] != _modality_info(full_store, "feat")["sha256"]


def test_tokenize_resume_with_a_retrained_tokenizer_is_refused(full_store, tmp_path, tokenizer_dir, registry):
    import torch

    from fourm_core.tokenizers import load_codecs, save_codecs
    from fourm_registry import ModalitySet

    run = copy_store(full_store, tmp_path / "s.zarr")
    Store.open(run, "r+").mark_done("edges", "tokens", 2, False)
    codecs = load_codecs(tokenizer_dir, ModalitySet([registry["edges"]]))
    with torch.no_grad():
        for p in codecs["edges"].tokenizer.parameters():
            p.add_(0.01)
    retrained = tmp_path / "retrained"
    save_codecs(retrained, codecs)
    kw = dict(crops=2, registry=registry, progress=False)
    with pytest.raises(StoreError, match=r"edges/tokens has finished shards written by another tokenizer"):
        tokenize(run, ["edges"], tokenizers_dir=str(retrained), **kw)
    rep = tokenize(run, ["edges"], tokenizers_dir=tokenizer_dir, **kw)["edges"]
    assert (rep.shards_done, rep.shards_skipped) == (1, 3)
    rep = tokenize(run, ["edges"], tokenizers_dir=str(retrained), overwrite=True, **kw)["edges"]
    assert rep.shards_done == 4


# --------------------------------------------------------------------------------------------------
# 8. values beyond float16's range are refused after the cast
def test_values_beyond_float16_are_refused(tmp_path):
    spec = ModalitySpec(name="depth16", kind="vector", vocab_size=8, num_tokens=2,
                        storage=StorageSpec(dtype="float16", shape=(3,)))
    store = Store.create(str(tmp_path / "f.zarr"), 2, samples_per_shard=2)
    with pytest.raises(StoreError, match=r"raw sample 1 contains values beyond the range of float16.*1e\+06"):
        store.write_raw(spec, 0, [np.ones(3, np.float32), np.array([1.0, 1e6, 2.0], np.float32)])
    store.write_raw(spec, 0, [np.ones(3, np.float32), np.full(3, 60000.0, np.float32)])
    assert np.isfinite(np.stack(store.read_raw("depth16", [0, 1]))).all()


def test_a_job_whose_lock_was_taken_over_stops_writing(full_store, tmp_path, registry, monkeypatch):
    """A job that lost its lock to ``--force`` stops before its next shard instead of writing beside the new
    holder. Simulated inside the job: before its second shard another job forces the lock away."""
    import fourm_core.data.label_job as label_job

    run = copy_store(full_store, tmp_path / "s.zarr")
    Store.open(run, "r+").mark_done("edges", "raw", 2, False)
    Store.open(run, "r+").mark_done("edges", "raw", 3, False)
    real_check = WriterLock.check
    calls = []

    def check_then_lose(self):
        calls.append(self.job_id)
        if len(calls) == 2:
            WriterLock.acquire(run, "the forcing job", force=True)
        real_check(self)

    monkeypatch.setattr(WriterLock, "check", check_then_lose)
    with pytest.raises(StoreLockedError, match="this job lost its writer lock to `the forcing job`"):
        label_job.label(run, ["edges"], registry=registry, progress=False)
    store = Store.open(run)
    assert store.done("edges", "raw").tolist() == [True, True, True, False]  # shard 3 never written
    assert WriterLock.holder(run)["job"] == "the forcing job"  # the lost lock is not released by the loser


def test_torn_partial_last_shard_is_redone(photos, tmp_path, registry):
    """Catches a torn object of the partial last shard (8 samples in shards of 3: the last holds 2), which zarr
    decodes before writing into it: the redo used to die with zarr's raw checksum error, for ever."""
    from fourm_core.data import ingest

    url = str(tmp_path / "p.zarr")
    ingest(photos, url, samples_per_shard=3, raw_size=RAW_SIZE, registry=registry, progress=False)
    label(url, ["edges"], registry=registry, progress=False)
    want = Store.open(url).read_raw("edges", range(NUM))
    f = _shard_file(url, "edges/raw", 2)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    Store.open(url, "r+").mark_done("edges", "raw", 2, False)
    rep = label(url, ["edges"], registry=registry, progress=False)["edges"]
    assert (rep.shards_done, rep.shards_skipped, rep.samples) == (1, 2, 2)
    got = Store.open(url).read_raw("edges", range(NUM))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert inspect_store(url)["problems"] == []
