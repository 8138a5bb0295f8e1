"""``fourm generate`` and ``fourm index``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fourm_registry.cli import FourmGroup


@pytest.fixture(scope="module")
def cli():
    import click

    from fourm_core.cli_generate import register_commands

    @click.group(cls=FourmGroup)
    def group():
        """test group"""

    register_commands(group)
    return group


def test_generate_writes_outputs(cli, checkpoint_dir, photo, tmp_path):
    img = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(img)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["generate", "--model", str(checkpoint_dir), "--in", f"rgb={img}",
                                   "--in", "caption=a photo of an astronaut", "--out", "depth,dinov2_global", "--save", str(out), "--seed", "1",
                                   "--steps", "2", "--temperature", "0.5", "--guidance", "1.5"])
    assert res.exit_code == 0, res.output
    depth = np.load(out / "depth.npy")
    assert depth.shape == (224, 224, 1)
    assert np.load(out / "dinov2_global.npy").shape == (768,)
    for name in ("depth.png", "dinov2_global.png", "grid.png"):
        assert Image.open(out / name).size[0] > 0
    res2 = CliRunner().invoke(cli, ["generate", "--model", str(checkpoint_dir), "--in", f"rgb={img}",
                                    "--out", "caption", "--save", str(out), "--temperature", "0"])
    assert res2.exit_code == 0, res2.output
    assert (out / "caption.txt").read_text().endswith("\n")


def test_generate_errors(cli, checkpoint_dir, tmp_path):
    res = CliRunner().invoke(cli, ["generate", "--model", str(checkpoint_dir), "--in", "rgb=missing.jpg",
                                   "--out", "depth", "--save", str(tmp_path)])
    assert res.exit_code != 0 and "does not exist" in res.output
    res = CliRunner().invoke(cli, ["generate", "--model", str(checkpoint_dir), "--in", "caption=a cat",
                                   "--out", "sky", "--save", str(tmp_path)])
    assert res.exit_code == 2 and "does not know modality 'sky'" in res.output
    res = CliRunner().invoke(cli, ["generate", "--model", str(checkpoint_dir), "--in", "caption",
                                   "--out", "depth", "--save", str(tmp_path)])
    assert res.exit_code != 0 and "NAME=VALUE" in res.output


def test_index_command(cli, tmp_path):
    from fourm_registry import get_modalities

    from fourm_core.data import Store

    spec = get_modalities()["dinov2_global"]
    url = str(tmp_path / "s.zarr")
    store = Store.create(url, 6, samples_per_shard=4)
    vecs = np.random.default_rng(0).normal(size=(6, 768)).astype(np.float16)
    store.write_raw(spec, 0, list(vecs))
    out = tmp_path / "idx.npz"
    res = CliRunner().invoke(cli, ["index", url, "--modality", "dinov2_global", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["vectors"] == 6 and info["dim"] == 768
    from fourm_core.retrieval import Index

    index = Index.load(out)
    _, ids = index.search(vecs[4].astype(np.float32), 1)
    assert ids[0, 0] == 4
    res = CliRunner().invoke(cli, ["index", url, "--modality", "depth", "--out", str(out)])
    assert res.exit_code == 2 and "global-embedding" in res.output


def test_generate_modes_flags(cli, checkpoint_dir, photo, tmp_path):
    """Unconditional rows (no --in), a completed caption (--given), weighted captions (--cond, negative too),
    in-painting (--given + --given-mask), schedule flags."""
    img = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(img)
    out = tmp_path / "out"
    base = ["generate", "--model", str(checkpoint_dir), "--save", str(out), "--steps", "2"]
    res = CliRunner().invoke(cli, [*base, "--out", "depth", "--batch-size", "2", "--token-schedule", "linear",
                                   "--temperature-schedule", "onex:0.5:0.5", "--guidance-schedule", "cosine"])
    assert res.exit_code == 0, res.output
    assert np.load(out / "depth_1.npy").shape == (224, 224, 1)
    res = CliRunner().invoke(cli, [*base, "--in", f"rgb={img}", "--out", "caption", "--given", "caption=a photo of",
                                   "--cond", "2:depth=" + str(out / "depth_0.npy"), "--cond", "-1:depth=" +
                                   str(out / "depth_1.npy")])
    assert res.exit_code == 0, res.output
    assert (out / "caption.txt").read_text().startswith("a photo of")
    mask = tmp_path / "mask.npy"
    np.save(mask, np.arange(224)[None, :].repeat(224, 0) >= 112)
    res = CliRunner().invoke(cli, [*base, "--in", f"rgb={img}", "--out", "depth", "--given", f"depth={out / 'depth_0.npy'}",
                                   "--given-mask", f"depth={mask}"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, [*base, "--in", f"rgb={img}", "--out", "depth", "--cond", "caption=a cat"])
    assert res.exit_code == 2 and "WEIGHT:NAME=VALUE" in res.output
