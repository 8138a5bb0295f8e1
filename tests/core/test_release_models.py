"""Released 4M checkpoints (the reference's hub format) load as they come, run like the reference, and fail
clearly.

Uses the shared release-format set (``../shared/conformance/ml4m_release``, or ``FOURM_RELEASE_DIR``): its
``fm/`` directory was written by the reference's own ``save_pretrained`` for a tiny random model, with one
masked batch and the reference's outputs (``fm_io.*``), and ``archs.json`` lists the state-dict keys of the
real released models (4M-7 B/L/XL, 4M-21 B/L/XL, 4M-7-SR L).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fourm_core.compat import ml4m
from fourm_core.compat.ml4m import ML4MImportError
from fourm_core.model import FourM

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
FM = RELEASE / "fm"
pytestmark = pytest.mark.requires(
    "conformance", available=(FM / "config.json").is_file() and (RELEASE / "fm_io.safetensors").is_file(),
    reason=f"the shared release-format set {RELEASE} (fm/, fm_io.*) is not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


@pytest.fixture(scope="module")
def io():
    return load_file(str(RELEASE / "fm_io.safetensors")), json.loads((RELEASE / "fm_io.json").read_text())


def _loss(model: FourM, io) -> torch.Tensor:
    tensors, meta = io
    md = ml4m.mod_dict_from_reference(tensors, model.ml4m_names, prefix="input.")
    with torch.no_grad():
        out = model(md, num_encoder_tokens=meta["num_encoder_tokens"], num_decoder_tokens=meta["num_decoder_tokens"],
                    loss_type="mod_reference")
    return out.loss


def test_verify_release_model_part_passes_on_the_shared_set():
    passed, summary = ml4m.verify_model(RELEASE)
    assert passed, summary


def test_verify_release_cli_passes_on_the_shared_set():
    """CI requires the whole set: model forward, text serialization, schedules and tokenizers."""
    archs = Path(__file__).resolve().parents[1] / "fixtures" / "ml4m_release_tiny_archs.json"
    r = subprocess.run([sys.executable, "-m", "fourm_core.compat.ml4m", "verify-release", str(RELEASE),
                        "--archs", str(archs)],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    for part in ("fm ok", "text ok", "schedules ok", "tokenizer divae_rgb ok", "tokenizer vqvae_semseg ok"):
        assert part in r.stdout, (part, r.stdout)
    line = r.stdout.strip()
    assert line.startswith("ml4m verify-release") and "PASS" in line and "\n" not in line, line


def _copy_fm(tmp_path: Path) -> Path:
    d = tmp_path / "set"
    d.mkdir()
    shutil.copytree(FM, d / "fm")
    for f in ("fm_io.safetensors", "fm_io.json"):
        shutil.copy(RELEASE / f, d / f)
    return d


def test_verify_model_fails_on_a_perturbed_layernorm(tmp_path):
    """Catches a verifier that cannot fail: one perturbed LayerNorm weight in the decoder exceeds 1e-5."""
    d = _copy_fm(tmp_path)
    path = d / "fm" / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    state["decoder.1.norm2.weight"] = state["decoder.1.norm2.weight"] + 1e-3
    save_file(state, str(path), metadata=meta)
    passed, summary = ml4m.verify_model(d)
    assert not passed and "FAIL" in summary


def test_cli_exit_codes(tmp_path):
    """1 for a failing part, 2 (one line on stderr) for a set that cannot be read."""
    d = _copy_fm(tmp_path)
    (d / "fm" / "config.json").write_text("{broken")
    r = subprocess.run([sys.executable, "-m", "fourm_core.compat.ml4m", "verify-release", str(d)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "fm FAIL" in r.stdout and "not valid JSON" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "fourm_core.compat.ml4m", "verify-release", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "is not a directory" in r.stdout


# --- the three ways a released checkpoint arrives -----------------------------------------------------------

def test_directory_loads_in_eval_mode_with_reference_names(io):
    model = FourM.from_pretrained(FM)
    assert not model.training
    names = model.ml4m_names
    assert names["rgb@224"] == "rgb" and names["tok_rgb@224"] == "tok_rgb" and names["t5_caption"] == "text_embedding"
    assert model.modalities["tok_dinov2_global"].pos_emb == "learned"
    assert model.modalities["text_embedding"].encoder and not model.modalities["text_embedding"].decoder
    assert float(_loss(model, io)) == pytest.approx(io[1]["loss_total"], abs=1e-5)


def _lay_out_hub_cache(cache: Path, repo: str, files: dict[str, Path], revision: str = "0" * 40) -> None:
    """A Hugging Face cache as huggingface_hub writes it: blobs, a snapshot of symlinks, refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / revision
    (root / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    for i, (name, src) in enumerate(files.items()):
        blob = root / "blobs" / f"{i:040d}"
        shutil.copy(src, blob)
        (snap / name).symlink_to(os.path.relpath(blob, snap))


def test_hub_id_from_a_local_cache_offline(tmp_path, monkeypatch, io):
    cache = tmp_path / "hub"
    _lay_out_hub_cache(cache, "EPFL-VILAB/4M-tiny-test", {"config.json": FM / "config.json",
                                                          "model.safetensors": FM / "model.safetensors",
                                                          "README.md": FM / "README.md"})
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these at import: an earlier test may have imported it already
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    model = FourM.from_pretrained("EPFL-VILAB/4M-tiny-test")
    assert float(_loss(model, io)) == pytest.approx(io[1]["loss_total"], abs=1e-5)
    with pytest.raises(Exception, match=r"EPFL-VILAB/4M-absent.*huggingface-cli download"):
        FourM.from_pretrained("EPFL-VILAB/4M-absent")


def test_single_safetensors_with_the_config_in_its_metadata(tmp_path, io):
    """The reference's single-file form: every tensor (tied copies included) and the config as literal strings."""
    cfg = json.loads((FM / "config.json").read_text())
    state = load_file(str(FM / "model.safetensors"))
    with safe_open(str(FM / "model.safetensors"), "pt") as f:
        tied = f.metadata()
    for dropped, kept in tied.items():
        state[dropped] = state[kept].clone()
    meta = {k: str(v) for k, v in cfg.items()}
    meta["lr"] = "0.0001"  # training arguments ride along in such files and are ignored
    path = tmp_path / "4m.safetensors"
    save_file(state, str(path), metadata=meta)
    model = FourM.from_pretrained(path)
    assert float(_loss(model, io)) == pytest.approx(io[1]["loss_total"], abs=1e-5)
    save_file(state, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ML4MImportError, match=r"bare\.safetensors: its safetensors metadata holds no 4M config"):
        FourM.from_pretrained(tmp_path / "bare.safetensors")


def test_save_release_round_trip(tmp_path, io):
    """A loaded release written back in the reference's layout loads to the same outputs."""
    model = FourM.from_pretrained(FM)
    out = ml4m.save_release(model, tmp_path / "back")
    again = FourM.from_pretrained(out)
    assert torch.equal(_loss(again, io), _loss(model, io))
    keys = set(load_file(str(out / "model.safetensors")))
    assert "encoder_embeddings.t5_caption.emb_proj.bias" in keys and "decoder_embeddings.caption.to_logits.weight" in keys


# --- errors -------------------------------------------------------------------------------------------------

def _edited_fm(tmp_path: Path, edit) -> Path:
    d = tmp_path / "fm"
    shutil.copytree(FM, d)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_unknown_reference_modality_names_the_fix(tmp_path):
    d = _edited_fm(tmp_path, lambda c: c["domains_in"].append("tok_future@224"))
    with pytest.raises(ML4MImportError, match=r"reference modality 'tok_future@224'.*does not know; install a plugin "
                                              r"that declares 'tok_future@224' as an alias"):
        FourM.from_pretrained(d)


def test_missing_plugin_is_named(tmp_path):
    from fourm_registry import get_modalities

    installed = get_modalities()
    without = installed.subset([n for n in installed.names if n != "metadata"])
    with pytest.raises(ML4MImportError, match=r"'metadata'.*plugin fourm-metadata.*`pip install fourm-metadata`"):
        FourM.from_pretrained(FM, modalities=without)


def test_unknown_config_key_and_damaged_weights(tmp_path):
    d = _edited_fm(tmp_path, lambda c: c.update(dim_typo=3))
    with pytest.raises(ML4MImportError, match=r"config\.json.*unknown key.*'dim_typo'"):
        FourM.from_pretrained(d)
    d2 = tmp_path / "cut"
    shutil.copytree(FM, d2)
    data = (d2 / "model.safetensors").read_bytes()
    (d2 / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ML4MImportError, match=r"model\.safetensors is not a readable safetensors file.*re-download"):
        FourM.from_pretrained(d2)


def test_weights_that_do_not_fit_the_config(tmp_path):
    d = _edited_fm(tmp_path, lambda c: c.update(dim=48, num_heads=6))
    with pytest.raises(ML4MImportError, match=r"has shape .*, fourm .*"):
        FourM.from_pretrained(d)


# --- the real released architectures (keys and shapes only, meta device) -------------------------------------

def _archs() -> dict:
    return json.loads((RELEASE / "archs.json").read_text())["fm"]


@pytest.mark.parametrize("name", list(_archs()) if (RELEASE / "archs.json").is_file() else [])
def test_real_release_architectures_map_key_for_key(name):
    """For every released FM configuration (4M-7, 4M-21, 4M-7-SR with its @448 modalities), a fourm model built
    from the config takes every key of the real checkpoint with its shape and leaves no parameter uncovered."""
    entry = _archs()[name]
    ref = ml4m.release_to_reference(entry["config"], name)
    with torch.device("meta"):
        from fourm_core.compat.ml4m.modalities import modalities_from_reference

        mods, names, vocab = modalities_from_reference(ref, missing="error")
        model = FourM(mods, ml4m.model_config_from_reference(ref["model"]), vocab_sizes=vocab)
    saved = {k: shape for k, shape, *_ in entry["keys"] if k not in entry["dropped_by_save_model"]}
    from fourm_core.compat.ml4m.weights import reference_key_problems

    assert reference_key_problems(model, saved, names) == []
    # the reference also counts the input tables its image decoders hold and never use; fourm has none
    params = dict(model.named_parameters())
    unused = sum(math.prod(shape) for k, shape in saved.items() if k.startswith("decoder_embeddings.")
                 and k.endswith(".token_emb.weight") and ml4m._rename(k, names) not in params)
    assert model.num_parameters() + unused == entry["num_parameters"]
