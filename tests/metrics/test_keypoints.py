"""human_pose keypoint mAP by OKS: a hand-computed OKS, and the mAP against pycocotools' keypoint evaluation."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from fourm_human_pose.metrics import COCO_SIGMAS, HumanPoseMetric, oks


def _person(box, kps, score=1.0):
    return {"box": list(map(float, box)), "score": float(score), "keypoints": [[float(x), float(y), int(v)] for x, y, v in kps]}


def test_oks_by_hand():
    ref = np.zeros((1, 17, 3))
    ref[0, 0] = [10, 10, 2]
    ref[0, 5] = [20, 20, 1]
    pred = ref.copy()
    pred[0, 0, :2] += [3, 4]  # 5 px off on the nose, the left shoulder exact
    area = 100.0
    e = 25 / (2 * COCO_SIGMAS[0]) ** 2 / area / 2
    assert oks(pred, ref, np.array([area]))[0, 0] == pytest.approx((math.exp(-e) + 1) / 2)
    assert oks(pred, np.zeros((1, 17, 3)), np.array([area]))[0, 0] == 0.0  # no labeled keypoint


def _random_people(rng, n_img, h, w):
    preds, refs = [], []
    for _ in range(n_img):
        gp, pp = [], []
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.random(2) * 0.5
            bw, bh = 0.2 + rng.random(2) * 0.3
            kps = np.stack([x0 + rng.random(17) * bw, y0 + rng.random(17) * bh, rng.integers(0, 3, 17)], 1)
            kps[kps[:, 2] == 0, :2] = 0
            kps[0, 2] = 2
            gp.append(_person([x0, y0, x0 + bw, y0 + bh], kps))
            noisy = kps.copy()
            noisy[:, :2] = np.clip(kps[:, :2] + rng.normal(0, 0.02, (17, 2)), 0, 1)
            noisy[:, 2] = 2
            pp.append(_person([x0, y0, x0 + bw, y0 + bh], noisy, round(float(rng.random()), 3)))
        refs.append({"format": "coco17", "persons": gp, "image_size": [h, w]})
        preds.append({"format": "coco17", "persons": pp})
    return preds, refs


def test_keypoint_map_matches_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(2)
    h, w = 120, 160
    preds, refs = _random_people(rng, 8, h, w)
    m = HumanPoseMetric()
    m.update(preds, refs)
    f = m.compute()
    scale = np.array([w, h, 1.0])
    images, anns, dets = [], [], []
    for i, (p, r) in enumerate(zip(preds, refs)):
        images.append({"id": i + 1, "height": h, "width": w})
        for g in r["persons"]:
            x0, y0, x1, y1 = np.asarray(g["box"]) * [w, h, w, h]
            kps = np.asarray(g["keypoints"]) * scale
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "keypoints": kps.reshape(-1).tolist(), "num_keypoints": int((kps[:, 2] > 0).sum())})
        for d in p["persons"]:
            kps = np.asarray(d["keypoints"]) * scale
            dets.append({"image_id": i + 1, "category_id": 1, "score": d["score"], "keypoints": kps.reshape(-1).tolist()})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert [f["mAP"], f["mAP50"], f["mAP75"]] == pytest.approx(list(ev.stats[:3]), abs=1e-9)
    assert 0.2 < f["mAP"] < 0.95
