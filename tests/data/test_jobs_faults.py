"""Faults the jobs must survive: a SIGKILLed ``fourm tokenize`` resumed, torn shards under a cleared done flag
(tokens, crops, labels), and flipped bytes caught by the store's checksums.

Every kill point is deterministic (no sleeps, no polling): the test plugin's ``ImageTransform.crop`` SIGKILLs its
process on the crop call after ``FOURM_DATATEST_KILL_AFTER_CROPS`` calls (tokenize crops every (sample, crop) of a
shard before it writes the shard, so the kill lands inside a known shard of a known modality), and the jobs' test
hook ``FOURM_TEST_KILL_AT=<job>:<modality>:<shard>`` SIGKILLs between a shard's data and its done flag.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import PER_SHARD, RUNNER, copy_store

from fourm_core.data import CorruptDataError, IncompleteDataError, Store, crop_params, inspect_store, label, tokenize

TOKENIZED = ("rgbtok", "edges", "stats", "feat")  # the modalities of the full_store fixture, 2 crops, seed 0
NUM = 8  # samples of the ingested photos: 4 shards of PER_SHARD = 2


def fourm(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    full_env.pop("FOURM_DATATEST_KILL_AFTER_CROPS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, ingested, registry, tinynet_weights) -> str:
    """The ingested photos labeled with edges, stats and feat (as full_store, before its tokenize)."""
    url = copy_store(ingested, tmp_path_factory.mktemp("faults") / "labeled.zarr")
    label(url, ["feat", "edges", "stats"], weights={"feat": tinynet_weights}, registry=registry, progress=False)
    return url


def all_tokens(url: str) -> dict[str, np.ndarray]:
    """Every modality's tokens and the crop parameters of a store (raises if any shard is incomplete)."""
    store = Store.open(url)
    out = {name: store.read_tokens(name, range(NUM)) for name in TOKENIZED}
    out["_crops"] = store.read_crops(range(NUM))
    return out


def assert_same_tokens(run: str, ref: str) -> None:
    got, want = all_tokens(run), all_tokens(ref)
    for name in want:
        assert np.array_equal(got[name], want[name]), f"{name} differs from the uninterrupted run"
    assert inspect_store(run)["modalities"] == inspect_store(ref)["modalities"]
    assert inspect_store(run)["crops"] == inspect_store(ref)["crops"]


# --------------------------------------------------------------------------------------------------
# a real SIGKILL during `fourm tokenize`
def test_tokenize_sigkilled_mid_shard_then_resumed_matches_uninterrupted(labeled, full_store, tmp_path, tokenizer_dir,
                                                                         registry):
    """Catches a resume that trusts (marks done, skips) the shard the kill interrupted, one that redoes a
    finished shard, and one that loses the crops or tokens of the shards finished before the kill."""
    run = copy_store(labeled, tmp_path / "run.zarr")
    args = ["-m", ",".join(TOKENIZED), "--crops", "2", "--tokenizers", tokenizer_dir, "--batch-size", "3",
            "--no-progress"]
    # per shard: rgbtok crops 2 samples x 2 crops, then edges the same (stats and feat are not cropped) = 8 calls;
    # 2 shards (16 calls) + rgbtok of shard 2 (4) + 1: the kill comes at edges' second crop of shard 2
    killed = fourm("tokenize", run, *args, env={"FOURM_DATATEST_KILL_AFTER_CROPS": "21"})
    assert killed.returncode == -9, killed.stderr
    store = Store.open(run)
    assert store.done("rgbtok", "tokens").tolist() == [True, True, True, False]
    for name in ("edges", "stats", "feat"):
        assert store.done(name, "tokens").tolist() == [True, True, False, False], name
    assert store.crops_done().tolist() == [True, True, True, False]
    # what the interrupted shard holds is not a finished shard: its tokens read as incomplete
    with pytest.raises(IncompleteDataError, match=r"edges/tokens is not complete for shard\(s\) \[2\]"):
        store.read_tokens("edges", [4])

    # resumed in-process (the job the command calls; the command's report lines are the same counts)
    reps = tokenize(run, list(TOKENIZED), crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False,
                    batch_size=3)
    # every shard is tokenized exactly once over the two runs: the resumed run does exactly the unfinished ones
    assert (reps["rgbtok"].shards_done, reps["rgbtok"].shards_skipped) == (1, 3)
    for name in ("edges", "stats", "feat"):
        assert (reps[name].shards_done, reps[name].shards_skipped, reps[name].samples) == (2, 2, 2 * PER_SHARD), name
    again = Store.open(run)
    for name in TOKENIZED:
        assert again.done(name, "tokens").all(), name
    # token for token the store of the uninterrupted run (the full_store fixture: same labels, crops, seed)
    assert_same_tokens(run, full_store)


def _killed_in_a_fork(kill_at: str, job, *args, **kwargs) -> int:
    """Run ``job(*args, **kwargs)`` in a forked process with FOURM_TEST_KILL_AT=``kill_at`` (the jobs' test hook:
    SIGKILL after that shard's data is written, before its done flag); its exit code."""
    import multiprocessing as mp

    def target():
        os.environ["FOURM_TEST_KILL_AT"] = kill_at
        job(*args, **kwargs)

    proc = mp.get_context("fork").Process(target=target)
    proc.start()
    proc.join(timeout=300)
    return proc.exitcode


def test_tokenize_killed_between_shard_data_and_flag_redoes_that_shard(labeled, full_store, tmp_path, tokenizer_dir,
                                                                      registry):
    """Catches a tokenize that sets a shard's done flag before its data (killed in between, the resumed run
    would trust a shard that was never written), and a resume that trusts written data without its flag."""
    run = copy_store(labeled, tmp_path / "run.zarr")
    kw = dict(crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False, batch_size=3)
    code = _killed_in_a_fork("tokenize:edges:1", tokenize, run, list(TOKENIZED), **kw)
    assert code == -9
    store = Store.open(run)
    assert store.done("rgbtok", "tokens").tolist() == [True, True, False, False]
    for name in ("edges", "stats", "feat"):
        assert store.done(name, "tokens").tolist() == [True, False, False, False], name
    # shard 1 of edges holds its final tokens already, but without the flag it is not trusted
    assert np.array_equal(store.read_tokens("edges", [2, 3], check_complete=False),
                          Store.open(full_store).read_tokens("edges", [2, 3]))
    reps = tokenize(run, list(TOKENIZED), **kw)
    assert (reps["rgbtok"].shards_done, reps["rgbtok"].shards_skipped) == (2, 2)
    for name in ("edges", "stats", "feat"):
        assert (reps[name].shards_done, reps[name].shards_skipped, reps[name].samples) == (3, 1, 3 * PER_SHARD), name
    assert_same_tokens(run, full_store)


def test_label_killed_between_shard_data_and_flag_redoes_that_shard(ingested, full_store, tmp_path, registry,
                                                                    tinynet_weights):
    """The same for label, killed in its second modality: the first one is kept whole, the killed shard is
    labeled again, and the result equals the uninterrupted labels."""
    run = copy_store(ingested, tmp_path / "run.zarr")
    kw = dict(weights={"feat": tinynet_weights}, registry=registry, progress=False)
    code = _killed_in_a_fork("label:feat:1", label, run, ["feat", "edges", "stats"], **kw)
    assert code == -9
    store = Store.open(run)
    assert store.done("edges", "raw").all()
    assert store.done("feat", "raw").tolist() == [True, False, False, False]
    assert not store.has("stats", "raw") or not store.done("stats", "raw").any()
    reps = label(run, ["feat", "edges", "stats"], **kw)
    assert (reps["edges"].shards_done, reps["edges"].shards_skipped) == (0, 4)
    assert (reps["feat"].shards_done, reps["feat"].shards_skipped, reps["feat"].samples) == (3, 1, 3 * PER_SHARD)
    assert (reps["stats"].shards_done, reps["stats"].shards_skipped) == (4, 0)
    want = inspect_store(full_store)["modalities"]
    got = inspect_store(run)["modalities"]
    for name in ("rgb", "edges", "feat", "stats"):
        assert {k: v for k, v in got[name].items() if k != "tokens"} == \
            {k: v for k, v in want[name].items() if k != "tokens"}, name


# --------------------------------------------------------------------------------------------------
# torn shards under a cleared done flag are rewritten, never trusted
def _shard_file(url: str, path: str, shard: int) -> Path:
    """The zarr shard object of ``path`` (an array of one chunk per sample) holding shard ``shard``."""
    arr = Store.open(url)._array(path)  # noqa: SLF001
    return Path(url, path, "c", str(shard), *(["0"] * (arr.ndim - 1)))


def _tear(url: str, path: str, shard: int, how: str, good: np.ndarray) -> None:
    """Leave shard ``shard`` of array ``path`` as an interrupted writer could: ``good`` are its correct values."""
    store = Store.open(url, "r+")
    arr = store._array(path)  # noqa: SLF001
    rng = store.shards()[shard]
    f = _shard_file(url, path, shard)
    assert f.is_file(), f
    if how == "missing":  # killed before the shard's object was written
        f.unlink()
    elif how == "truncated":  # killed while the shard's object was being written
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "first_sample_only":  # only the shard's first chunk got written
        f.unlink()
        arr[rng.start:rng.start + 1] = good[:1]
    elif how == "wrong_values":  # a complete shard of other values (e.g. an older tokenizer's, another crop)
        if arr.dtype.kind in "iu" and path.endswith("tokens"):
            arr[rng.start:rng.stop] = (good + 1) % 16
        else:
            arr[rng.start:rng.stop] = good[::-1] if len(good) > 1 else good + 1
    else:
        raise AssertionError(how)


# "truncated": a shard object cut short (a torn write on a store without atomic writes): the job deletes the
# object of a shard it redoes before writing it, so zarr never decodes the torn one
TEARS = ("missing", "truncated", "first_sample_only", "wrong_values")


@pytest.mark.parametrize("how", TEARS)
def test_tokenize_rewrites_torn_shard_whose_flag_is_cleared(full_store, tmp_path, tokenizer_dir, registry, how):
    """Catches a resume that keeps (marks done, or skips) a shard whose done flag is not set because the data
    that is there may be torn: only the flag says a shard is finished."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    good = Store.open(full_store).read_tokens("edges", range(2, 4))
    _tear(run, "edges/tokens", 1, how, good)
    Store.open(run, "r+").mark_done("edges", "tokens", 1, False)
    rep = tokenize(run, ["edges"], crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False)["edges"]
    assert (rep.shards_done, rep.shards_skipped, rep.samples) == (1, 3, PER_SHARD)
    assert Store.open(run).done("edges", "tokens").all()
    assert_same_tokens(run, full_store)


@pytest.mark.parametrize("how", ("missing", "wrong_values"))
def test_tokenize_redraws_torn_crops_whose_flag_is_cleared(full_store, tmp_path, tokenizer_dir, registry, how):
    """Catches a tokenize that keeps crop parameters of an unfinished crop shard (the tokens cut from them
    would differ from an uninterrupted run's), or that draws them again where they are finished."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    good = Store.open(full_store).read_crops(range(4, 6))
    store = Store.open(run, "r+")
    _tear(run, "_crops/params", 2, how, good)
    store._array("_crops/done")[2] = False  # noqa: SLF001 - the crop shard was interrupted ...
    for name in TOKENIZED:  # ... so none of its tokens were written
        store.mark_done(name, "tokens", 2, False)
    # crop parameters of finished shards are never redrawn: make shard 0's visibly different, flag kept
    kept = np.broadcast_to(np.array([1, 2, 3, 4, 1], np.int32), good.shape).copy()
    store.write_crops(0, kept, mark_done=False)
    reps = tokenize(run, list(TOKENIZED), crops=2, tokenizers_dir=tokenizer_dir, registry=registry, progress=False)
    assert all((r.shards_done, r.shards_skipped) == (1, 3) for r in reps.values()), reps
    got = Store.open(run).read_crops(range(NUM))
    assert np.array_equal(got[0:2], kept)
    assert np.array_equal(got[2:], crop_params(range(2, NUM), 2, 64, seed=0))
    assert Store.open(run).crops_done().all()
    want, have = all_tokens(full_store), all_tokens(run)
    for name in TOKENIZED:
        assert np.array_equal(have[name][4:6], want[name][4:6]), name


@pytest.mark.parametrize("how", TEARS)
def test_label_rewrites_torn_shard_whose_flag_is_cleared(full_store, tmp_path, registry, how):
    """The same for label: a torn edges shard with its flag cleared is labeled again, the others are kept."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    ref = Store.open(full_store)
    good = np.stack(ref.read_raw("edges", range(4, 6)))
    _tear(run, "edges/raw", 2, how, good)
    Store.open(run, "r+").mark_done("edges", "raw", 2, False)
    rep = label(run, ["edges"], registry=registry, progress=False)["edges"]
    assert (rep.shards_done, rep.shards_skipped, rep.samples) == (1, 3, PER_SHARD)
    store = Store.open(run)
    assert store.done("edges", "raw").all()
    assert all(np.array_equal(a, b) for a, b in zip(store.read_raw("edges", range(NUM)), ref.read_raw("edges", range(NUM))))
    assert inspect_store(run)["modalities"]["edges"] == inspect_store(full_store)["modalities"]["edges"]


# --------------------------------------------------------------------------------------------------
# checksums
CHECKED = [
    ("edges/tokens", 1),    # int32 tokens
    ("stats/raw", 2),       # JSON strings
    ("_crops/params", 3),   # crop parameters
    ("edges/raw", 1),       # uint8 images
]


def _read(store: Store, path: str, idx) -> list:
    name, what = path.split("/")
    if name == "_crops":
        return list(store.read_crops(idx))
    if what == "tokens":
        return list(store.read_tokens(name, idx))
    return store.read_raw(name, idx)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x == y if isinstance(x, dict) else np.array_equal(x, y) for x, y in zip(a, b))


def _check_flips(full_store: str, run: str, path: str, shard: int, positions) -> None:
    f = _shard_file(run, path, shard)
    orig = f.read_bytes()
    ref = Store.open(full_store)
    rng = ref.shards()[shard]
    others = [i for i in range(NUM) if i not in rng]
    want_others = _read(ref, path, others)
    store = Store.open(run)
    silent = []
    for i in positions(len(orig)):
        damaged = bytearray(orig)
        damaged[i] ^= 0xFF
        f.write_bytes(bytes(damaged))
        try:
            _read(store, path, range(NUM))
        except CorruptDataError as exc:
            msg = str(exc)
            assert f"array {path!r} is corrupt for samples [" in msg, msg
            bad = [int(s) for s in msg.split("samples [")[1].split("]")[0].split(", ")]
            assert bad and set(bad) <= set(rng), (i, msg)  # only samples of the damaged shard are blamed
        else:
            silent.append(i)
        assert _same(_read(store, path, others), want_others)  # the other shards stay readable
    assert not silent, f"flipped bytes at {silent} of {f} ({len(orig)} bytes) were not detected"
    f.write_bytes(orig)
    assert _same(_read(Store.open(run), path, range(NUM)), _read(ref, path, range(NUM)))


@pytest.mark.parametrize("path, shard", CHECKED)
def test_flipped_bytes_of_a_shard_are_detected(full_store, tmp_path, path, shard):
    """Catches a store that returns wrong values instead of raising CorruptDataError for a flipped byte in a
    chunk's data, its checksum or the shard index (the last bytes of the object), and one that blames samples
    outside the damaged shard. 12 positions: the first, the last 4, and 7 drawn with a fixed seed."""
    run = copy_store(full_store, tmp_path / "s.zarr")

    def positions(n: int) -> list[int]:
        drawn = np.random.default_rng(sum(map(ord, path))).choice(n - 5, size=7, replace=False) + 1
        return sorted({0, n - 4, n - 3, n - 2, n - 1, *drawn.tolist()})

    _check_flips(full_store, run, path, shard, positions)


@pytest.mark.slow
@pytest.mark.parametrize("path, shard", CHECKED)
def test_every_flipped_byte_of_a_shard_is_detected(full_store, tmp_path, path, shard):
    """The exhaustive version: every byte position of the shard object."""
    run = copy_store(full_store, tmp_path / "s.zarr")
    _check_flips(full_store, run, path, shard, range)
