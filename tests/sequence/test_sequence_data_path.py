"""The model-based sequence plugins (caption, det, human_pose) and text_embedding through the data path:
ingest real photos into a store whose raw size is not the default, label with tiny weights, tokenize two
crops per sample with the shared text tokenizer, and decode the tokens back to raw values."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_registry import get_modalities

MODS = ["caption", "det", "human_pose", "text_embedding"]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    import skimage.data as sd
    from PIL import Image

    from fourm_caption.testing import save_tiny_blip
    from fourm_core.data import Store, ingest, label
    from fourm_det.testing import save_tiny_detr
    from fourm_human_pose.testing import save_tiny_vitpose
    from fourm_text_embedding.testing import save_tiny_t5

    mods = get_modalities()
    missing = [m for m in MODS if m not in mods]
    assert not missing, f"sequence plugins not installed: {missing} (pip install -r requirements-dev.txt)"
    root = tmp_path_factory.mktemp("seqdata")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(sd, name)()).save(photos / f"{name}.png")
    url = str(root / "s.zarr")
    ingest(str(photos), url, samples_per_shard=2, raw_size=96)
    w = {"caption": save_tiny_blip(root / "blip"), "det": save_tiny_detr(root / "detr"),
         "human_pose": save_tiny_vitpose(root / "pose"), "text_embedding": save_tiny_t5(root / "t5")}
    reports = label(url, MODS, weights=w, progress=False,
                    labeler_kwargs={"caption": {"max_new_tokens": 6, "num_beams": 1},
                                    "human_pose": {"detector_weights": w["det"]}})
    assert all(r.samples == 3 for r in reports.values())
    return url, Store.open(url), mods


def test_labels_are_stored_per_spec(labeled):
    from fourm_core.testing import check_raw

    _, store, mods = labeled
    for m in MODS:
        raws = store.read_raw(m, range(3))
        for raw in raws:
            check_raw(mods[m], raw)
    dets = store.read_raw("det", range(3))
    assert all(d["image_size"] == [96, 96] for d in dets)
    assert all(isinstance(c, str) and c for c in store.read_raw("caption", range(3)))


def test_tokenize_two_crops_and_decode(labeled, tmp_path):
    import torch

    from fourm_core.data import Store, inspect_store, tokenize
    from fourm_core.tokenizers import ModalityCodec, SequenceTokenizer, TextTokenizer, save_codecs

    url, store, mods = labeled
    seq = ["caption", "det", "human_pose"]
    corpus = [mods[m].serializer.build().to_text(r) for m in seq for r in store.read_raw(m, range(3))]
    specials = sum(len(s.special_tokens) for s in mods.specs if s.kind == "sequence")
    text = TextTokenizer.build_for(mods, corpus * 3, vocab_size=4204 + specials + 200)
    codecs = {m: ModalityCodec(mods[m], SequenceTokenizer(max_length=mods[m].max_length, text_tokenizer=text),
                               serializer=mods[m].serializer.build()) for m in seq}
    save_codecs(tmp_path / "tok", codecs)
    tokenize(url, seq, crops=2, tokenizers_dir=str(tmp_path / "tok"), progress=False)
    info = inspect_store(url)["modalities"]
    for m in seq:
        assert info[m]["tokens"]["complete"] == 3 and info[m]["tokens"]["shape"] == [2, mods[m].max_length]
    tokens = np.asarray(Store.open(url).read_tokens("det", range(3)))
    assert tokens.shape == (3, 2, mods["det"].max_length)
    back = codecs["det"].decode(torch.as_tensor(tokens.reshape(-1, tokens.shape[-1])).long())
    # each decoded crop is the stored det raw seen through that crop (crop params stored once per sample)
    params = Store.open(url).read_crops(range(3))  # (N, C, 5): top, left, h, w, flip
    transform, ser = mods["det"].transform.build(), mods["det"].serializer.build()
    raws = store.read_raw("det", range(3))
    for i in range(3):
        for c in range(2):
            top, left, h, w, flip = (int(v) for v in params[i, c])
            expected = transform.crop(raws[i], box=(top, left, h, w), flip=bool(flip), size=(224, 224))
            assert ser.to_text(back[2 * i + c]) == ser.to_text(expected)
