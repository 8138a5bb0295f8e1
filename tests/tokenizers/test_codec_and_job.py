"""ModalityCodec / load_codecs / save_codecs, and the train-tokenizer job (folder, zarr store, resume, CLI).

Uses the installed rgb / caption plugins (cross-distribution test) with tiny tokenizer overrides.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fourm_core.tokenizers import (
    CodecError, MLPVQ, ModalityCodec, SequenceTokenizer, TextTokenizer, ViTVQVAE, load_codecs, save_codecs,
)
from fourm_registry import ModalitySet, ModalitySpec, StorageSpec, get_modalities

TINY = {"image_size": 32, "patch_size": 8, "dim": 32, "depth": 1, "num_heads": 2, "vocab_size": 64, "code_dim": 8}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photos_uint8() -> list[np.ndarray]:
    from skimage import data, transform

    return [(transform.resize(getattr(data, n)()[..., :3], (64, 64), anti_aliasing=True) * 255).astype(np.uint8)
            for n in ("astronaut", "chelsea", "coffee", "rocket")]


def test_codecs_round_trip_and_directory(tmp_path, photos_uint8):
    mods = get_modalities()
    tok_rgb, caption = mods["tok_rgb"], mods["caption"]
    image_spec = ModalitySpec(name="tok_rgb", kind="image", vocab_size=64, grid=(4, 4), source="rgb",
                              transform=tok_rgb.transform, visualizer=tok_rgb.visualizer)
    vec_spec = ModalitySpec(name="emb", kind="vector", vocab_size=32, num_tokens=4,
                            storage=StorageSpec(dtype="float32", shape=(12,)))
    subset = ModalitySet([image_spec, vec_spec, caption])
    rgb_codec = ModalityCodec(image_spec, tok_rgb.tokenizer.build(**TINY), transform=tok_rgb.transform.build())
    raws = [img[:32, :32] for img in photos_uint8]
    tokens = rgb_codec.encode(raws)
    assert tokens.dtype == torch.long and tokens.shape == (4, 16)
    back = rgb_codec.decode(tokens)
    assert len(back) == 4 and back[0].shape == (32, 32, 3) and back[0].dtype == np.uint8
    vec_codec = ModalityCodec(vec_spec, MLPVQ(in_dim=12, num_tokens=4, hidden_dim=16, vocab_size=32, code_dim=4))
    vecs = [np.random.default_rng(i).normal(size=12).astype(np.float32) for i in range(3)]
    assert vec_codec.encode(vecs).shape == (3, 4) and vec_codec.decode(vec_codec.encode(vecs))[0].shape == (12,)

    text = TextTokenizer.train(["a cat on a couch", "an astronaut"], vocab_size=4300)
    cap_codec = ModalityCodec(caption, caption.tokenizer.build(text_tokenizer=text), serializer=caption.serializer.build())
    ids = cap_codec.encode(["a cat on a couch"])
    assert ids.shape == (1, 256) and ids[0, 5] == 3
    assert cap_codec.decode(ids) == ["a cat on a couch"]

    save_codecs(tmp_path / "toks", {"tok_rgb": rgb_codec, "emb": vec_codec, "caption": cap_codec})
    assert (tmp_path / "toks" / "text" / "tokenizer.json").is_file()
    loaded = load_codecs(tmp_path / "toks", subset)
    assert set(loaded) == {"tok_rgb", "emb", "caption"}
    assert torch.equal(loaded["tok_rgb"].encode(raws), tokens)
    assert torch.equal(loaded["caption"].encode(["a cat on a couch"]), ids)
    assert torch.equal(loaded["emb"].encode(vecs), vec_codec.encode(vecs))


def test_missing_tokenizer_names_modality_and_command(tmp_path):
    mods = get_modalities().subset(["depth", "caption"])
    with pytest.raises(CodecError, match=r"no text tokenizer for sequence modality 'caption'.*--modality text"):
        load_codecs(tmp_path, mods.subset(["caption"]))
    with pytest.raises(CodecError, match=r"no tokenizer for modality 'depth'.*fourm train-tokenizer --modality depth"):
        load_codecs(tmp_path, mods.subset(["depth"]))
    ViTVQVAE(in_channels=1, **TINY).save_pretrained(tmp_path / "depth")
    with pytest.raises(CodecError, match=r"gives 16 tokens, but modality 'depth' declares 196"):
        load_codecs(tmp_path, mods.subset(["depth"]))
    with pytest.raises(ValueError, match="has no text tokenizer"):
        SequenceTokenizer(max_length=8, modality="det").encode([{}])


def _cfg(tmp_path, **extra):
    import yaml

    cfg = {"steps": 12, "batch_size": 4, "lr": 0.002, "save_every": 6, "log_every": 3, "cpu": True,
           "num_recon_images": 2, "tokenizer": TINY, **extra}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_folder_training_resume(tmp_path, photos_uint8):
    from PIL import Image

    import click

    from fourm_trainers.cli_tokenizer import register_commands

    from fourm_registry.cli import FourmGroup

    cli = FourmGroup()  # as under `fourm`: fourm errors become one `error:` line
    register_commands(cli)

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(photos_uint8):
        Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "toks"
    runner = CliRunner()
    args = ["train-tokenizer", "--modality", "tok_rgb", "--data", str(folder), "--out", str(out),
            "--config", str(_cfg(tmp_path))]
    res = runner.invoke(cli, args + ["--steps", "6"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    run = out / "_runs" / "tok_rgb"
    assert (run / "checkpoints" / "step_6" / "train_state.json").is_file()
    res = runner.invoke(cli, args)
    assert res.exit_code != 0 and "--resume" in res.output
    res = runner.invoke(cli, args + ["--resume"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["start_step"] == 6 and summary["final"]["step"] == 12
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [3, 6, 9, 12]
    assert {"recon_loss", "usage", "perplexity", "images_per_s"} <= set(lines[-1])
    png = Image.open(summary["recon_png"])
    assert png.width >= 2 * 32 and png.height >= 2 * 32
    loaded = load_codecs(out, ModalitySet([ModalitySpec(name="tok_rgb", kind="image", vocab_size=64, grid=(4, 4),
                                                        transform=get_modalities()["tok_rgb"].transform)]))
    assert loaded["tok_rgb"].encode([photos_uint8[0][:32, :32]]).shape == (1, 16)
    res = runner.invoke(cli, ["train-tokenizer", "--modality", "tok_rgb", "--data", str(folder), "--out",
                              str(tmp_path / "o2"), "--config", str(_cfg(tmp_path, bogus=1))])
    assert res.exit_code != 0 and "unknown tokenizer training config keys ['bogus']" in res.output


def test_resume_is_exact(tmp_path, photos_uint8):
    """Resuming from the step-6 checkpoint gives the same weights as the uninterrupted run (the LR schedule
    depends on the total steps, so the "interrupted" run is the full run with its later state deleted)."""
    import shutil

    from PIL import Image

    from fourm_trainers.tokenizer_train import TokenizerTrainConfig, train_tokenizer
    from fourm_core.tokenizers import load_tokenizer

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(photos_uint8):
        Image.fromarray(img).save(folder / f"{i}.png")
    base = dict(batch_size=4, lr=0.002, save_every=6, log_every=3, cpu=True, tokenizer=TINY, num_recon_images=1)
    train_tokenizer("tok_rgb", str(folder), tmp_path / "a", config=TokenizerTrainConfig.from_dict({**base, "steps": 12}))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "_runs" / "tok_rgb" / "checkpoints" / "step_12")
    shutil.rmtree(tmp_path / "b" / "tok_rgb")
    train_tokenizer("tok_rgb", str(folder), tmp_path / "b", config=TokenizerTrainConfig.from_dict({**base, "steps": 12}),
                    resume=True)
    a, b = load_tokenizer(tmp_path / "a" / "tok_rgb"), load_tokenizer(tmp_path / "b" / "tok_rgb")
    diffs = {k: float((va.float() - vb.float()).abs().max()) for (k, va), vb in
             zip(a.state_dict().items(), b.state_dict().values())}
    print("max abs weight difference after resume:", max(diffs.values()))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_store_image_and_text(tmp_path, photos_uint8):
    from fourm_core.data.store import Store
    from fourm_trainers.tokenizer_train import TokenizerTrainConfig, train_tokenizer

    mods = get_modalities()
    url = str(tmp_path / "s.zarr")
    store = Store.create(url, 4, samples_per_shard=2, raw_size=64)
    store.write_raw(mods["rgb"], 0, photos_uint8)
    store.write_raw(mods["caption"], 0, ["a woman astronaut", "a cat", "a cup of coffee", "a rocket on a pad"])
    cfg = TokenizerTrainConfig.from_dict(dict(steps=4, batch_size=2, save_every=4, log_every=2, cpu=True,
                                              tokenizer=TINY, num_recon_images=2, vocab_size=4500))
    s = train_tokenizer("tok_rgb", url, tmp_path / "toks", config=cfg)
    assert s["final"]["step"] == 4 and (tmp_path / "toks" / "tok_rgb" / "model.safetensors").is_file()
    t = train_tokenizer("text", url, tmp_path / "toks", config=cfg)
    assert t["samples"] == {"caption": 4}
    text = TextTokenizer.load(tmp_path / "toks" / "text" / "tokenizer.json")
    assert text.decode(text.encode(["a cup of coffee"], 8)) == ["a cup of coffee"]
    for spec in mods.of_kind("sequence").specs:  # every installed sequence plugin's specials are whole tokens
        for special in spec.special_tokens[:3]:
            assert text.token_to_id(special) is not None, (spec.name, special)
