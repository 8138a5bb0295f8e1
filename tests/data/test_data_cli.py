"""The commands as users run them: a SIGKILLed labeling run resumed, two processes vs one, ingest/inspect CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from data_helpers import RAW_SIZE, RUNNER, copy_store

from fourm_core.data import Store, inspect_store, label


def fourm(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def inspect_json(url: str) -> dict:
    res = fourm("inspect", url, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_cli_ingest_and_inspect(photos, tmp_path):
    url = str(tmp_path / "cli.zarr")
    res = fourm("ingest", str(photos), url, "--samples-per-shard", "3", "--raw-size", "32")
    assert res.returncode == 0, res.stderr
    assert "ingested 8 images" in res.stdout and "skipped nested/broken.png" in res.stdout
    info = inspect_json(url)
    assert info["num_samples"] == 8 and info["modalities"]["rgb"]["complete"] == 8
    assert info["modalities"]["rgb"]["shape"] == [32, 32, 3] and len(info["modalities"]["rgb"]["sha256"]) == 64
    # the same command again: the store is complete, nothing is redone
    same = fourm("ingest", str(photos), url, "--samples-per-shard", "3", "--raw-size", "32")
    assert same.returncode == 0 and "ingested 8 images" in same.stdout, same.stderr
    assert inspect_json(url)["modalities"] == info["modalities"]
    # other sizes: a different store, refused without --overwrite
    again = fourm("ingest", str(photos), url)
    assert again.returncode == 2 and "already exists and was ingested from other files or sizes" in again.stderr
    assert "pass --overwrite to replace it" in again.stderr


def test_label_killed_then_resumed_matches_uninterrupted(ingested, tmp_path, tinynet_weights, registry):
    ref = copy_store(ingested, tmp_path / "ref.zarr")
    run = copy_store(ingested, tmp_path / "run.zarr")
    args = ["-m", "edges,feat", "--weights", f"feat={tinynet_weights}", "--batch-size", "1", "--no-progress"]
    # the uninterrupted reference run, in-process (the same job the CLI calls)
    label(ref, ["edges", "feat"], weights={"feat": tinynet_weights}, batch_size=1, registry=registry, progress=False)
    # one labeler call per sample; the 6th call SIGKILLs the process in the middle of shard 2 of edges
    killed = fourm("label", run, *args, env={"FOURM_DATATEST_KILL_AFTER": "5"})
    assert killed.returncode == -9, killed.stderr
    assert Store.open(run).done("edges", "raw").tolist() == [True, True, False, False]
    resumed = fourm("label", run, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "edges: 2 shard(s) labeled, 2 already complete" in resumed.stdout
    a, b = inspect_store(ref), inspect_json(run)
    assert a["modalities"] == b["modalities"]
    assert a["modalities"]["feat"]["complete"] == 8


def test_label_cli_errors(ingested, tmp_path):
    url = copy_store(ingested, tmp_path / "s.zarr")
    res = fourm("label", url, "-m", "feat")
    assert res.returncode == 2 and "requires 'edges'" in res.stderr
    res = fourm("label", url, "-m", "nope")
    assert res.returncode == 2 and "unknown modality 'nope'" in res.stderr
    res = fourm("label", url, "-m", "edges", "--weights", "oops")
    assert res.returncode == 2 and "NAME=PATH" in res.stderr


def test_two_processes_match_one(ingested, tmp_path, tinynet_weights, tokenizer_dir):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    one = copy_store(ingested, tmp_path / "one.zarr")
    two = copy_store(ingested, tmp_path / "two.zarr")
    label_args = ["label", "-m", "edges,stats,feat", "--weights", f"feat={tinynet_weights}", "--no-progress"]
    tok_args = ["tokenize", "-m", "rgbtok,edges,stats,feat", "--crops", "3", "--tokenizers", tokenizer_dir,
                "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for args in (label_args, tok_args):
        res = fourm(args[0], one, *args[1:])
        assert res.returncode == 0, res.stderr
        res = subprocess.run([torchrun, "--nproc_per_node", "2", str(RUNNER), args[0], two, *args[1:]],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
    assert inspect_json(one) == {**inspect_json(two)}
    assert inspect_json(two)["modalities"]["edges"]["tokens"]["complete"] == 8


def test_two_processes_on_uneven_shards_finish_and_match_one(photos, tmp_path, registry, tokenizer_dir):
    """3 shards on 2 processes (the last one partial): rank 0 encodes twice as many batches as rank 1. A
    tokenizer that communicated while encoding (the EMA quantizer's usage counts) deadlocked here forever."""
    from fourm_core.data import ingest

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    one = str(tmp_path / "one.zarr")
    ingest(photos, one, samples_per_shard=3, raw_size=RAW_SIZE, registry=registry, progress=False)
    two = copy_store(one, tmp_path / "two.zarr")
    args = ["-m", "rgbtok", "--crops", "2", "--tokenizers", tokenizer_dir, "--no-progress"]
    res = fourm("tokenize", one, *args)
    assert res.returncode == 0, res.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([torchrun, "--nproc_per_node", "2", str(RUNNER), "tokenize", two, *args],
                         capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr
    assert inspect_json(one) == inspect_json(two)
    assert len(Store.open(two).done("rgbtok", "tokens")) == 3


def test_a_labeler_that_cannot_load_leaves_no_empty_record(ingested, tmp_path):
    """A labeler that fails to build (bad weights path) exits with one error line and writes nothing: no empty
    0/N modality in the store, the next correct run starts clean."""
    url = copy_store(ingested, tmp_path / "s.zarr")
    res = fourm("label", url, "-m", "edges")
    assert res.returncode == 0, res.stderr
    res = fourm("label", url, "-m", "feat", "--weights", f"feat={tmp_path / 'missing-weights'}")
    assert res.returncode != 0
    assert "feat" not in inspect_json(url)["modalities"]
