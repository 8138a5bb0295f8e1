"""Fine-tuning from an imported reference (apple/ml-4m) checkpoint: ``init_format: ml4m`` in the trainer.

Uses the shared reference set ``ml4m_tiny`` (``../shared/conformance/ml4m_tiny`` next to the repository: the
reference weights and config). Its modalities ``tok_rgb@224`` and ``color_palette`` map to the installed
plugins' ``tok_rgb`` (through its alias) and ``color_palette`` (equal name), which the trainer's stores hold;
``canny_edge`` is a modality the checkpoint does not know, added with fresh tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainer_helpers import _views, base_config, build_store, real_photos

from fourm_trainers import train as T
from fourm_trainers.config import TrainConfig
from fourm_trainers.train import build as trainer_build

REF = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "ml4m_tiny"
pytestmark = pytest.mark.requires(
    "conformance", available=(REF / "weights.safetensors").exists() and (REF / "config.json").exists(),
    reason=f"the shared reference set {REF} (weights.safetensors + config.json) is not present")


@pytest.fixture(scope="module")
def known_store(tmp_path_factory) -> str:
    """A store of real photos holding only modalities the reference checkpoint knows (tok_rgb, color_palette)."""
    imgs = [v for img in real_photos()[:4] for v in _views(img, 112)]
    return build_store(tmp_path_factory.mktemp("ml4m") / "known.zarr", imgs, ("tok_rgb", "color_palette"))


def _reference_model():
    from fourm_core.compat.ml4m import load_ml4m_checkpoint

    return load_ml4m_checkpoint(REF / "weights.safetensors", REF / "config.json")


def _capture_first_forward(monkeypatch) -> dict:
    """Patch the trainer's model builder so that the first training forward records its inputs and the
    parameters it ran with (before any optimizer step)."""
    seen: dict = {}
    orig = trainer_build.build_or_load_model

    def hook(module, args, kwargs):
        if "params" not in seen:
            seen["params"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            seen["mod_dict"] = {m: {f: t.clone() for f, t in d.items()} for m, d in args[0].items()}
            seen["kwargs"] = dict(kwargs)

    def build(*a, **k):
        model = orig(*a, **k)
        model.register_forward_pre_hook(hook, with_kwargs=True)
        seen["model"] = model
        return model

    monkeypatch.setattr(trainer_build, "build_or_load_model", build)
    return seen


def _visible(mod_dict: dict) -> set[str]:
    """Modalities with input or target tokens in a masked batch (the model's other modalities ride along empty:
    the store does not hold them)."""
    return {m for m, d in mod_dict.items() if bool((~d["input_mask"]).any() or (~d["target_mask"]).any())}


def _ml4m_config(out: Path, stores: dict, **over) -> TrainConfig:
    return TrainConfig.from_dict(base_config(
        out, stores, init_from=str(REF / "weights.safetensors"), init_format="ml4m",
        init_ml4m_config=str(REF / "config.json"), **over))


def _loss_lines(out: Path) -> list[dict]:
    import json

    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "split" not in r]


def test_finetune_from_a_reference_checkpoint_starts_from_its_weights(tmp_path, known_store, monkeypatch):
    """The first training step runs the imported weights (every parameter equals the reference's, and the
    logged first loss equals a forward of the independently imported model on that batch); training then
    moves them and saves a final model that ``from_pretrained`` loads."""
    from fourm_core.model import FourM

    seen = _capture_first_forward(monkeypatch)
    cfg = _ml4m_config(tmp_path / "ft", {"train": known_store}, max_steps=3, optimizer={"lr": 1e-3})
    s = T.train(cfg)
    assert s["step"] == 3

    ref = _reference_model()
    ref_sd = ref.state_dict()
    assert set(seen["params"]) == set(ref_sd)
    differ = [k for k in ref_sd if not torch.equal(seen["params"][k], ref_sd[k])]
    assert not differ, f"parameters not taken from the reference checkpoint at step 0: {differ[:5]}"
    # the reference stores float16 parameters: a trunk weight at step 0 is exactly the upcast stored value
    from safetensors.torch import load_file

    stored = load_file(str(REF / "weights.safetensors"))
    trunk_key = next(k for k in stored if k.startswith("encoder.") and k.endswith("qkv.weight"))
    assert torch.equal(seen["params"][trunk_key], stored[trunk_key].float())

    assert _visible(seen["mod_dict"]) == {"tok_rgb", "color_palette"}
    ref.train()
    with torch.no_grad():
        expected = float(ref(seen["mod_dict"], **seen["kwargs"]).loss)
    first = _loss_lines(tmp_path / "ft")[0]
    assert first["step"] == 1 and set(k for k in first if k.startswith("loss/")) == {"loss/tok_rgb",
                                                                                     "loss/color_palette"}
    assert first["loss"] == pytest.approx(expected, abs=1e-5)
    # a fresh model of the same shape would start elsewhere: the check above can tell
    torch.manual_seed(0)
    fresh = FourM(ref.modalities, ref.config, vocab_sizes=dict(ref.vocab_sizes)).train()
    with torch.no_grad():
        assert abs(float(fresh(seen["mod_dict"], **seen["kwargs"]).loss) - expected) > 1e-3

    final = FourM.from_pretrained(tmp_path / "ft" / "final")
    assert set(final.modalities.names) == set(ref.modalities.names)
    fsd = final.state_dict()
    assert not torch.equal(fsd[trunk_key], ref_sd[trunk_key])  # training moved the trunk
    assert all(fsd[k].shape == ref_sd[k].shape for k in ref_sd)
    final.train()
    with torch.no_grad():
        out = final(seen["mod_dict"], **seen["kwargs"])
    assert torch.isfinite(out.loss)


def test_finetune_from_a_reference_checkpoint_adds_a_modality_it_does_not_know(tmp_path, stores, monkeypatch):
    """canny_edge is not in the reference checkpoint: it gets fresh tables, every reference weight is kept at
    step 0, and the saved model knows both the reference modalities and canny_edge."""
    from fourm_core.model import FourM

    seen = _capture_first_forward(monkeypatch)
    cfg = _ml4m_config(tmp_path / "ft", stores, max_steps=3, optimizer={"lr": 1e-3})
    T.train(cfg)
    ref_sd = _reference_model().state_dict()
    p0 = seen["params"]
    assert all(torch.equal(p0[k], ref_sd[k]) for k in ref_sd)
    new = sorted(set(p0) - set(ref_sd))
    assert new and all(k.split(".")[1] == "canny_edge" for k in new), new
    assert {"encoder_embeddings.canny_edge.token_emb.weight", "decoder_embeddings.canny_edge.token_emb.weight"} <= set(new)
    assert _visible(seen["mod_dict"]) == {"tok_rgb", "color_palette", "canny_edge"}
    lines = _loss_lines(tmp_path / "ft")
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all(k in lines[0] for k in ("loss/tok_rgb", "loss/color_palette", "loss/canny_edge"))

    final = FourM.from_pretrained(tmp_path / "ft" / "final")
    assert "canny_edge" in final.modalities and "tok_rgb" in final.modalities and "caption" in final.modalities
    fsd = final.state_dict()
    assert any(not torch.equal(fsd[k], p0[k]) for k in new)  # the new tables trained
