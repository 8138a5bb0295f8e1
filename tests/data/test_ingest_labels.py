"""Real labels in: a manifest / label folders with depth, semseg, det, caption (and normal, human_pose) labels
through the plugins' readers and the image's resize + centre crop; bad input named by row, file and
modality; ``fourm label`` refuses to overwrite real labels."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.data import Store, label
from fourm_core.data.crops import centre_crop_geometry
from fourm_core.data.errors import StoreError
from fourm_core.data.jobs import ingest
from fourm_registry import get_modalities

RAW = 32
LABELED = ["rgb", "depth", "semseg", "det", "caption", "normal", "human_pose", "canny_edge"]
# (name, skimage loader): real photos of three shapes (landscape, portrait after a transpose, square)
PHOTOS = {"chelsea": (300, 451), "coffee_t": (600, 400), "astronaut": (512, 512)}


@pytest.fixture(scope="module")
def mods():
    return get_modalities().subset([m for m in LABELED if m in get_modalities()])


def _rect(size, frac=(0.3, 0.4, 0.7, 0.8)):
    """A pixel rectangle (y0, x0, y1, x1) of an image of ``size`` (H, W), from fractions."""
    h, w = size
    return int(frac[0] * h), int(frac[1] * w), int(frac[2] * h), int(frac[3] * w)


def _crop_of(y, x, size):
    """Where original pixel (y, x) lands in the RAW x RAW crop of an image of ``size``."""
    h, w = size
    nh, nw, top, left = centre_crop_geometry(w, h, RAW)
    return (y + 0.5) * nh / h - 0.5 - top, (x + 0.5) * nw / w - 0.5 - left


def _nearest_crop(src, size):
    """The RAW x RAW centre crop of ``src`` (H, W) resized with nearest sampling at pixel centres."""
    h, w = size
    nh, nw, top, left = centre_crop_geometry(w, h, RAW)
    rows = np.clip(np.floor((np.arange(RAW) + top + 0.5) * h / nh).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(RAW) + left + 0.5) * w / nw).astype(int), 0, w - 1)
    return src[rows][:, cols]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """photos/, depth/ (16-bit PNG in mm, 0 = invalid), semseg/ (class-index PNG), a COCO instances and a COCO
    captions file, and a CSV manifest over them."""
    import skimage.data as sd

    root = tmp_path_factory.mktemp("labeled")
    for d in ("photos", "depth", "semseg", "normal"):
        (root / d).mkdir()
    imgs = {"chelsea": sd.chelsea(), "coffee_t": sd.coffee().transpose(1, 0, 2), "astronaut": sd.astronaut()}
    images, annotations, captions = [], [], []
    for i, (name, img) in enumerate(imgs.items(), start=1):
        h, w = img.shape[:2]
        assert (h, w) == PHOTOS[name]
        Image.fromarray(np.ascontiguousarray(img)).save(root / "photos" / f"{name}.png")
        # depth grows left to right (1 m .. 5 m), with an invalid (0) block in the top-left corner
        depth = np.tile(np.linspace(1000, 5000, w), (h, 1)).astype(np.uint16)
        depth[: h // 8, : w // 8] = 0
        Image.fromarray(depth).save(root / "depth" / f"{name}.png")
        seg = np.full((h, w), 3, np.uint8)
        y0, x0, y1, x1 = _rect((h, w))
        seg[y0:y1, x0:x1] = 17
        Image.fromarray(seg).save(root / "semseg" / f"{name}.png")
        normal = np.zeros((h, w, 3), np.uint8)
        normal[...] = (128, 128, 255)
        Image.fromarray(normal).save(root / "normal" / f"{name}.png")
        images.append({"id": 100 + i, "file_name": f"{name}.png", "width": w, "height": h})
        annotations.append({"id": 10 * i, "image_id": 100 + i, "category_id": 18, "iscrowd": 0,
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
        annotations.append({"id": 10 * i + 1, "image_id": 100 + i, "category_id": 1, "iscrowd": 1,
                            "bbox": [0, 0, 5, 5]})
        captions.append({"id": 10 * i, "image_id": 100 + i, "caption": f"a  photo of {name}"})
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                     "categories": cats}))
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
    rows = [{"image": f"photos/{n}.png", "depth": f"depth/{n}.png", "semseg": f"semseg/{n}.png",
             "det": json.dumps({"file": "instances.json", "image_id": 100 + i}), "caption": f"caption of {n}"}
            for i, n in enumerate(imgs, start=1)]
    write_csv(root / "manifest.csv", rows)
    return root


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_manifest_with_real_labels_lands_aligned_with_the_image(dataset, tmp_path, mods):
    url = str(tmp_path / "s.zarr")
    rep = ingest(dataset / "manifest.csv", url, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False,
                 reader_options={"depth": {"scale": 0.001}})
    assert rep.num_samples == 3 and set(rep.labels) == {"depth", "semseg", "det", "caption"}
    store = Store.open(url)
    meta = store.modalities()
    for name in rep.labels:
        assert store.is_complete(name, "raw")
        assert meta[name]["source"] == "labels" and len(meta[name]["labels"]["sha256"]) == 64
    assert store.read_raw("caption", range(3)) == [f"caption of {n}" for n in PHOTOS]
    for i, (name, size) in enumerate(PHOTOS.items()):
        y0, x0, y1, x1 = _rect(size)
        # semseg: nearest resampling keeps the two ids; the rectangle is where the crop puts it
        seg = store.read_raw("semseg", [i])[0][..., 0]
        assert set(np.unique(seg).tolist()) <= {3, 17}
        (ty0, tx0), (ty1, tx1) = _crop_of(y0, x0, size), _crop_of(y1 - 1, x1 - 1, size)
        want = np.full(size, 3, np.uint8)
        want[y0:y1, x0:x1] = 17
        expected = _nearest_crop(want, size)
        assert (seg == 17).sum() > 50 and (seg != expected).mean() < 0.02  # at most the rectangle's edge differs
        # det: the dog box in the crop's normalised coordinates; the crowd box is left out
        det = store.read_raw("det", [i])[0]
        assert det["classes"] == ["dog"] and det["image_size"] == [RAW, RAW]
        want = np.clip([(tx0 + 0.5) / RAW, (ty0 + 0.5) / RAW, (tx1 + 0.5 + 0) / RAW, (ty1 + 0.5) / RAW], 0, 1)
        assert np.allclose(det["boxes"][0], want, atol=1.5 / RAW)
        # depth: normalised to [0, 1], growing left to right; the invalid corner took its neighbours' values
        depth = store.read_raw("depth", [i])[0][..., 0].astype(np.float32)
        assert depth.dtype == np.float32 and 0 <= depth.min() and depth.max() <= 1
        assert (np.diff(depth[RAW // 2], axis=0) >= -1e-3).all() and depth[RAW // 2, -1] > depth[RAW // 2, 0]
        assert (depth[:, 0] < 0.6).all()  # no invalid 0 m blended in as "nearest" nor filled as far


def test_jsonl_manifest_normals_poses_and_coco_captions(dataset, tmp_path, mods):
    h, w = PHOTOS["chelsea"]
    kps = [[w * 0.5, h * 0.5, 2]] + [[0, 0, 0]] * 16
    (dataset / "kp.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "photos/chelsea.png", "width": w, "height": h}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [w * 0.25, h * 0.25, w * 0.5, h * 0.5],
                         "keypoints": [v for k in kps for v in k], "num_keypoints": 1}]}))
    row = {"image": "photos/chelsea.png", "normal": "normal/chelsea.png",
           "human_pose": {"file": "kp.json", "file_name": "chelsea.png"},
           "caption": {"file": "captions.json", "image_id": 101}}
    (dataset / "m.jsonl").write_text(json.dumps(row) + "\n")
    url = str(tmp_path / "j.zarr")
    ingest(dataset / "m.jsonl", url, samples_per_shard=1, raw_size=RAW, registry=mods, progress=False)
    store = Store.open(url)
    assert store.read_raw("caption", [0]) == ["a photo of chelsea"]
    normal = store.read_raw("normal", [0])[0]
    assert normal.shape == (RAW, RAW, 3) and np.abs(normal.astype(int) - (128, 128, 255)).max() <= 1
    pose = store.read_raw("human_pose", [0])[0]
    (person,) = pose["persons"]
    cy, cx = _crop_of(h * 0.5 - 0.5, w * 0.5 - 0.5, (h, w))
    assert np.allclose(person["keypoints"][0][:2], [(cx + 0.5) / RAW, (cy + 0.5) / RAW], atol=1 / RAW)
    assert person["keypoints"][1] == [0.0, 0.0, 0]


def test_label_folders_matched_by_stem(dataset, tmp_path, mods):
    url = str(tmp_path / "f.zarr")
    rep = ingest(dataset / "photos", url, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False,
                 labels={"semseg": str(dataset / "semseg"), "det": str(dataset / "instances.json")})
    store = Store.open(url)
    keys = store._read(store._array("_samples/source"), np.arange(3)).tolist()  # noqa: SLF001
    assert rep.num_samples == 3 and keys == sorted(f"{n}.png" for n in PHOTOS)
    assert all(d["classes"] == ["dog"] for d in store.read_raw("det", range(3)))
    ref = Store.open(_manifest_store(dataset, tmp_path, mods))
    order = [list(PHOTOS).index(k[:-4]) for k in keys]
    assert all(np.array_equal(a, ref.read_raw("semseg", [j])[0]) for a, j in zip(store.read_raw("semseg", range(3)), order))


def _manifest_store(dataset, tmp_path, mods):
    url = str(tmp_path / "ref.zarr")
    ingest(dataset / "manifest.csv", url, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    return url


def _bad(dataset, tmp_path, mods, change, name="bad.csv", **kw):
    store = tmp_path / f"{name}.{len(list(tmp_path.iterdir()))}.zarr"
    rows = list(csv.DictReader(open(dataset / "manifest.csv")))
    change(rows)
    path = write_csv(dataset / name, rows)
    with pytest.raises(StoreError) as err:
        ingest(path, str(store), samples_per_shard=2, raw_size=RAW, registry=mods,
               progress=False, **kw)
    return str(err.value)


def test_missing_label_file_names_row_file_and_modality(dataset, tmp_path, mods):
    msg = _bad(dataset, tmp_path, mods, lambda rows: rows[1].update(depth="depth/nope.png"), name="missing.csv")
    assert "row 3 of missing.csv" in msg and "depth label file" in msg and "nope.png" in msg and "does not exist" in msg
    # the store the failed run left (no finished shard) is replaced when the fixed manifest is ingested
    left = next(tmp_path.glob("missing.csv.*.zarr"))
    shutil.copy(dataset / "manifest.csv", dataset / "missing.csv")
    rep = ingest(dataset / "missing.csv", str(left), samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    assert rep.num_samples == 3 and Store.open(str(left)).is_complete("depth")


def test_wrong_shape_label_is_refused(dataset, tmp_path, mods):
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(dataset / "semseg" / "small.png")
    msg = _bad(dataset, tmp_path, mods, lambda rows: rows[0].update(semseg="semseg/small.png"))
    assert "row 2 of bad.csv" in msg and "semseg" in msg and "small.png" in msg and "20x10" in msg
    assert "451x300" in msg and "must have its image's size" in msg


def test_unknown_class_id_is_refused_and_a_class_map_fixes_it(dataset, tmp_path, mods):
    seg = np.full(PHOTOS["astronaut"], 200, np.uint8)
    Image.fromarray(seg).save(dataset / "semseg" / "ids200.png")
    msg = _bad(dataset, tmp_path, mods, lambda rows: rows[2].update(semseg="semseg/ids200.png"))
    assert "row 4 of bad.csv" in msg and "ids200.png" in msg and "[200]" in msg and "133 classes" in msg
    assert "class_map" in msg
    (dataset / "map.json").write_text(json.dumps({"200": 5, "3": 3, "17": 17}))
    rows = list(csv.DictReader(open(dataset / "manifest.csv")))
    rows[2]["semseg"] = "semseg/ids200.png"
    url = str(tmp_path / "mapped.zarr")
    ingest(write_csv(dataset / "mapped.csv", rows), url, samples_per_shard=2, raw_size=RAW, registry=mods,
           progress=False, reader_options={"semseg": {"class_map": str(dataset / "map.json")}})
    assert (Store.open(url).read_raw("semseg", [2])[0] == 5).all()


def test_bad_det_reference_and_modalities_without_reader(dataset, tmp_path, mods):
    msg = _bad(dataset, tmp_path, mods, lambda rows: rows[0].update(det=json.dumps({"file": "instances.json",
                                                                                      "image_id": 999})))
    assert "row 2 of bad.csv" in msg and "det" in msg and "no image {'image_id': 999}" in msg
    msg = _bad(dataset, tmp_path, mods, lambda rows: [r.update(canny_edge="x.png") for r in rows])
    assert "'canny_edge'" in msg and "has no reader" in msg and "plugin" in msg
    msg = _bad(dataset, tmp_path, mods, lambda rows: [r.update(bogus="x") for r in rows])
    assert "'bogus' is not an installed modality" in msg
    msg = _bad(dataset, tmp_path, mods, lambda rows: rows[1].update(caption=""))
    assert "row 3 of bad.csv" in msg and "no 'caption' label" in msg


def test_label_does_not_overwrite_real_labels(dataset, tmp_path, mods):
    url = _manifest_store(dataset, tmp_path, mods)
    before = Store.open(url).read_raw_array("depth", range(3))
    with pytest.raises(StoreError, match=r"'depth' holds real labels .*pass --overwrite"):
        label(url, ["depth"], registry=mods, progress=False)
    assert np.array_equal(Store.open(url).read_raw_array("depth", range(3)), before)


def test_rerun_resumes_and_changed_labels_are_refused(dataset, tmp_path, mods):
    url = _manifest_store(dataset, tmp_path, mods)
    store = Store.open(url, "r+")
    first = store.read_raw_array("semseg", range(3))
    store.mark_done("rgb", "raw", 1, False)
    store._update_root(ingest={**store.attrs["ingest"], "complete": False})  # noqa: SLF001
    again = ingest(dataset / "manifest.csv", url, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    assert again.num_samples == 3 and np.array_equal(Store.open(url).read_raw_array("semseg", range(3)), first)
    rows = list(csv.DictReader(open(dataset / "manifest.csv")))
    rows[0]["caption"] = "another caption"
    write_csv(dataset / "manifest2.csv", rows)
    (dataset / "manifest.csv").rename(dataset / "orig.csv")
    (dataset / "manifest2.csv").rename(dataset / "manifest.csv")
    try:
        with pytest.raises(StoreError, match="already exists and was ingested from other files"):
            ingest(dataset / "manifest.csv", url, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False)
    finally:
        (dataset / "orig.csv").replace(dataset / "manifest.csv")


@pytest.mark.slow  # subprocesses: each imports torch and the plugins
def test_cli_ingests_a_manifest_and_label_refuses_with_one_line(dataset, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "FOURM_PLUGINS": "rgb,depth,semseg,det,caption"}

    def fourm(*args):
        return subprocess.run([sys.executable, "-m", "fourm_registry.cli", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    url = str(tmp_path / "cli.zarr")
    res = fourm("ingest", str(dataset / "manifest.csv"), url, "--raw-size", str(RAW), "--samples-per-shard", "2",
                "--reader-option", "depth.scale=0.001", "--reader-option", "semseg.unmapped=ignore")
    assert res.returncode == 0, res.stderr
    assert "ingested 3 images with labels of depth, semseg, det, caption into" in res.stdout
    res = fourm("label", url, "-m", "depth")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.returncode != 0 and len(lines) == 1 and "holds real labels" in lines[0] and "--overwrite" in lines[0]
    res = fourm("ingest", str(dataset / "manifest.csv"), url, "--reader-option", "depth=1")
    assert res.returncode == 2 and "MODALITY.KEY" in res.stderr


def test_bad_reader_options_fail_before_writing(dataset, tmp_path, mods):
    url = tmp_path / "opts.zarr"
    with pytest.raises(StoreError, match=r"reader of modality 'depth' .*refuses the options \{'scael': 1\}"):
        ingest(dataset / "manifest.csv", str(url), raw_size=RAW, registry=mods, progress=False,
               reader_options={"depth": {"scael": 1}})
    with pytest.raises(StoreError, match=r"reader options name \['normal'\]"):
        ingest(dataset / "manifest.csv", str(url), raw_size=RAW, registry=mods, progress=False,
               reader_options={"normal": {}})
    assert not url.exists()


@pytest.mark.slow  # spawns decoder processes
def test_worker_processes_write_the_same_labels(dataset, tmp_path, mods):
    one = _manifest_store(dataset, tmp_path, mods)
    pooled = str(tmp_path / "pooled.zarr")
    ingest(dataset / "manifest.csv", pooled, samples_per_shard=2, raw_size=RAW, registry=mods, progress=False,
           workers=2)
    a, b = Store.open(one), Store.open(pooled)
    for name in ("rgb", "depth", "semseg"):
        assert np.array_equal(a.read_raw_array(name, range(3)), b.read_raw_array(name, range(3)))
    assert a.read_raw("det", range(3)) == b.read_raw("det", range(3))
