"""Reference 4M import: parity on the shared conformance set, and self-consistency on other configs."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fourm_core.compat import ml4m
from fourm_core.model import FourM
from fourm_core.model.testing import random_mod_dict
from fourm_registry import ModalitySet

torch.set_num_threads(1)
# the reference's parity vectors live beside the checkout (../shared); FOURM_CONFORMANCE_DIR points elsewhere
SHARED = Path(os.environ.get("FOURM_CONFORMANCE_DIR")
              or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_tiny")
# where it is absent these tests skip, and under FOURM_STRICT_SKIPS=1 (CI) they fail (root conftest.py)
needs_shared = pytest.mark.requires("conformance", available=SHARED.exists(),
                                    reason=f"conformance set {SHARED} not present; put shared/ beside the checkout "
                                           f"or set FOURM_CONFORMANCE_DIR")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@needs_shared
def test_verify_cli_passes_on_shared_set():
    r = subprocess.run([sys.executable, "-m", "fourm_core.compat.ml4m", "verify", str(SHARED)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.strip()
    assert line.count("\n") == 0 and "PASS" in line and "grad" in line


@needs_shared
def test_verify_fails_on_perturbed_weights(tmp_path):
    for f in ("config.json", "inputs.safetensors", "outputs.safetensors"):
        shutil.copy(SHARED / f, tmp_path / f)
    w = load_file(str(SHARED / "weights.safetensors"))
    w["encoder.0.mlp.fc1.bias"] = w["encoder.0.mlp.fc1.bias"] + torch.linspace(0, 0.05, 128).half()
    save_file(w, str(tmp_path / "weights.safetensors"))
    passed, summary = ml4m.verify(tmp_path)
    assert not passed and "FAIL" in summary


@needs_shared
def test_subset_of_modalities_and_order_invariance():
    ref = json.loads((SHARED / "config.json").read_text())
    keep = ["tok_depth@224", "caption", "tok_dinov2_global", "tok_semseg@224"]
    sub = copy.deepcopy(ref)
    sub["modalities"] = {k: v for k, v in ref["modalities"].items() if k in keep}
    w = load_file(str(SHARED / "weights.safetensors"))
    w = {k: v for k, v in w.items() if not k.startswith(("encoder_embeddings.", "decoder_embeddings."))
         or k.split(".")[1] in keep}
    inputs = load_file(str(SHARED / "inputs.safetensors"))
    inputs = {k: v for k, v in inputs.items() if k.rpartition(".")[0] in keep}
    # once through generic specs only (no plugin), once through the installed plugins' aliases
    for installed in (ModalitySet([]), None):
        model = ml4m.load_ml4m_checkpoint(w, sub, installed=installed).eval()
        assert model.ml4m_names["caption"] == "caption"
        if installed is not None:  # nothing installed: generic, sanitised names
            assert model.ml4m_names["tok_depth@224"] == "tok_depth_224"
        md = ml4m.mod_dict_from_reference(inputs, model.ml4m_names)
        out = model(md, num_encoder_tokens=64, num_decoder_tokens=64, loss_type="mod_reference")
        assert torch.isfinite(out.loss) and len(out.losses) == 4
        # weights round trip under reference names
        back = ml4m.to_reference_state_dict(model, model.ml4m_names)
        for k, v in w.items():
            if k in back:  # sin-cos tables: ours may have more rows than the reference's 512
                assert torch.equal(back[k][:, : v.shape[1]] if k.endswith("pos_emb") else back[k], v.float()), k
        # reversed config order and mod_dict order give the same result
        rev = copy.deepcopy(sub)
        rev["modalities"] = dict(reversed(list(sub["modalities"].items())))
        model2 = ml4m.load_ml4m_checkpoint(w, rev, installed=installed).eval()
        out2 = model2(dict(reversed(list(md.items()))), num_encoder_tokens=64, num_decoder_tokens=64,
                      loss_type="mod_reference")
        torch.testing.assert_close(out.loss, out2.loss, atol=0, rtol=0)


def _other_reference_config() -> dict:
    """A different reference-format config: SwiGLU + QK-norm, no biases, other dims/depths, poses, 64 px."""
    img = lambda v, sincos, n, ch=None: {  # noqa: E731
        "class": "x", "vocab_size": v, "sincos_pos_emb": sincos, "patch_size": [16, 16], "image_size": [64, 64],
        **({"num_channels": ch} if ch else {})}
    seq = {"class": "SequenceEncoderEmbedding", "sincos_pos_emb": True}
    return {
        "model": {"dim": 48, "encoder_depth": 3, "decoder_depth": 1, "num_heads": 3, "mlp_ratio": 4.0,
                  "act": "SiLU", "gated_mlp": True, "qk_norm": True, "qkv_bias": False, "proj_bias": False,
                  "mlp_bias": False, "norm": {"type": "LayerNorm", "eps": 1e-6, "bias": False},
                  "decoder_sep_mask": True, "decoder_causal_mask": False, "num_register_tokens": 0,
                  "share_modality_embeddings": True, "decoder_share_embedding": True},
        "modalities": {
            "rgb@64": {"type": "img", "vocab_size": None, "max_tokens": 16, "in_encoder": True, "in_decoder": False,
                       "encoder_embedding": img(None, True, 16, 3)},
            "tok_depth@64": {"type": "img", "vocab_size": 64, "max_tokens": 16, "in_encoder": True,
                             "in_decoder": True, "encoder_embedding": img(64, True, 16)},
            "tok_pose": {"type": "seq", "vocab_size": 100, "max_tokens": 12, "in_encoder": True, "in_decoder": True,
                         "encoder_embedding": seq},
        },
        "num_encoder_tokens": 20, "num_decoder_tokens": 20,
    }


def _write_self_conformance(model, names, md, d: Path, ref: dict) -> None:
    """Write weights/inputs/outputs in the conformance format from our own model (self-consistency set)."""
    back = {v: k for k, v in names.items()}
    state = {k: v.half() if not k.endswith("pos_emb") or isinstance(dict(model.named_parameters()).get(
        ml4m._rename(k, names)), torch.nn.Parameter) else v for k, v in ml4m.to_reference_state_dict(model, names).items()}
    for k in list(state):  # reference bias-free LayerNorms keep zero bias buffers
        if k.endswith("norm.weight") or k.endswith("_norm.weight") or ".norm" in k and k.endswith(".weight"):
            state[k[: -len("weight")] + "bias"] = torch.zeros_like(state[k]).float()
    save_file(state, str(d / "weights.safetensors"))
    model.load_state_dict({k: v for k, v in model.state_dict().items()})
    ml4m.load_reference_state_dict(model, state, names)  # use the fp16-rounded values, as the reference did
    save_file({f"{back[m]}.{f}": t.contiguous() for m, e in md.items() for f, t in e.items()},
              str(d / "inputs.safetensors"))
    model.zero_grad()
    out = model(md, ref["num_encoder_tokens"], ref["num_decoder_tokens"], loss_type="mod_reference",
                return_details=True)
    out.loss.backward()
    enc = out.encoder
    order = [back[m] for m in enc.modalities]
    outputs = {"loss.total_mod": out.loss.detach().reshape(1),
               "encoder.output": enc.hidden.detach(), "encoder.padding_mask": enc.padding_mask,
               "encoder.slot_modality_index": enc.modality_index.int(), "encoder.slot_position": enc.position.int()}
    for m, r in out.decoder_rows.items():
        p = f"decoder.{back[m]}."
        outputs[p + "output"] = r.hidden.detach()
        outputs[p + "row_batch"], outputs[p + "row_position"] = r.batch.int(), r.position.int()
        outputs[p + "target_ids"] = r.targets
        lse = r.logits.detach().logsumexp(-1)
        outputs[p + "logsumexp"] = lse
        outputs[p + "nll"] = lse - r.logits.detach().gather(1, r.targets[:, None])[:, 0]
        outputs[p + "logits_rows"], outputs[p + "logits_row_index"] = r.logits.detach()[:2], torch.arange(2).int()
        outputs[f"loss.{back[m]}"] = out.losses[m].detach().reshape(1)
    for k, prm in model.named_parameters():
        if prm.grad is not None and "token_emb" not in k:
            key = k
            for side in ("encoder_embeddings.", "decoder_embeddings."):
                if k.startswith(side):
                    mod, _, rest = k[len(side):].partition(".")
                    key = f"{side}{back[mod]}.{rest}"
            outputs["grad." + key] = prm.grad.detach().clone()
    save_file(outputs, str(d / "outputs.safetensors"))
    (d / "config.json").write_text(json.dumps({**ref, "encoder_modality_order": order}))


def test_other_config_swiglu_qknorm_nobias_round_trip(tmp_path):
    ref = _other_reference_config()
    mods, names, vocab = ml4m.modalities_from_reference(ref, ModalitySet([]))
    assert names == {"rgb@64": "rgb_64", "tok_depth@64": "tok_depth_64", "tok_pose": "tok_pose"}
    torch.manual_seed(0)
    model = FourM(mods, ml4m.model_config_from_reference(ref["model"]), vocab_sizes=vocab).eval()
    keys = ml4m.to_reference_state_dict(model, names)
    assert "encoder_embeddings.tok_pose.token_emb.weight" in keys and "encoder.2.mlp.fc3.weight" in keys
    assert "decoder.0.cross_attn.k_norm.weight" in keys and "encoder.0.attn.qkv.bias" not in keys
    md = random_mod_dict(mods, batch=3, seed=3)
    _write_self_conformance(model, names, md, tmp_path, ref)
    passed, summary = ml4m.verify(tmp_path, installed=ModalitySet([]))
    assert passed, summary
    # the verifier is sensitive: a perturbed QK-norm weight fails it
    w = load_file(str(tmp_path / "weights.safetensors"))
    w["decoder.0.cross_attn.q_norm.weight"] = w["decoder.0.cross_attn.q_norm.weight"] * 1.5
    save_file(w, str(tmp_path / "weights.safetensors"))
    passed, summary = ml4m.verify(tmp_path, installed=ModalitySet([]))
    assert not passed, summary


def test_unsupported_reference_features_raise():
    ref = _other_reference_config()
    ref["model"]["decoder_causal_mask"] = True
    with pytest.raises(ml4m.ML4MImportError, match="decoder_causal_mask"):
        ml4m.model_config_from_reference(ref["model"])
    bad = _other_reference_config()
    bad["modalities"]["tok_pose"]["type"] = "audio"
    with pytest.raises(ml4m.ML4MImportError, match="'tok_pose'.*'audio'"):
        ml4m.modalities_from_reference(bad, ModalitySet([]))
    ref = _other_reference_config()
    mods, names, vocab = ml4m.modalities_from_reference(ref, ModalitySet([]))
    model = FourM(mods, ml4m.model_config_from_reference(ref["model"]), vocab_sizes=vocab)
    state = ml4m.to_reference_state_dict(model, names)
    state.pop("encoder.1.attn.proj.weight")
    with pytest.raises(ml4m.ML4MImportError, match="lacks 1 parameter.*encoder.1.attn.proj.weight"):
        ml4m.load_ml4m_checkpoint(state, ref, installed=ModalitySet([]))
