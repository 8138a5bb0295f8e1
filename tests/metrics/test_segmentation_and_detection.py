"""Confusion-matrix mIoU and COCO-style mAP: hand-computed tiny cases, and cross-checks against torchmetrics
(mIoU) and pycocotools (box and mask AP)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from fourm_core.metrics.base import MetricError
from fourm_core.metrics.detection import box_iou, greedy_match
from fourm_core.metrics.segmentation import SegmentationMetric
from fourm_det.metrics import DetMetric
from fourm_sam_instance.masks import encode_instances
from fourm_sam_instance.metrics import SamInstanceMetric


def test_miou_matches_hand_computation():
    ref = np.array([[0, 0, 1, 1, 255]], np.uint8)[..., None]
    pred = np.array([[0, 1, 1, 1, 0]], np.uint8)[..., None]
    m = SegmentationMetric()
    [score] = m.update([pred], [ref])
    f = m.compute()
    # class 0: tp 1, union 2 -> 1/2; class 1: tp 2, union 3 -> 2/3; the ignored pixel does not count
    assert f["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2) == score
    assert f["pixel_accuracy"] == pytest.approx(3 / 4)
    assert f["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_predicted_classes_outside_the_range_are_wrong_and_bad_references_fail():
    ref = np.zeros((2, 2, 1), np.uint8)
    m = SegmentationMetric(num_classes=3)
    m.update([np.full((2, 2, 1), 7, np.uint8)], [ref])
    assert m.compute() == {"mIoU": 0.0, "pixel_accuracy": 0.0, "mean_accuracy": 0.0}
    with pytest.raises(MetricError, match=r"'semseg' metrics, sample 0: reference class 5 is outside 0..2"):
        m.update([ref], [np.full((2, 2, 1), 5, np.uint8)])
    with pytest.raises(MetricError, match="integer class ids"):
        m.update([ref.astype(np.float32)], [ref])


@pytest.mark.slow  # importing torchmetrics takes 10-50 s
def test_miou_and_accuracy_match_torchmetrics():
    import torch
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    k = 6
    refs = [rng.integers(0, k, (12, 10, 1)).astype(np.uint8) for _ in range(3)]
    for r in refs:
        r[rng.random(r.shape) < 0.1] = 255
    preds = [np.where(rng.random(r.shape) < 0.6, r % k, rng.integers(0, k, r.shape)).astype(np.uint8) for r in refs]
    m = SegmentationMetric(num_classes=k)
    m.update(preds, refs)
    f = m.compute()
    p = torch.from_numpy(np.stack(preds).astype(np.int64)).reshape(-1)
    t = torch.from_numpy(np.stack(refs).astype(np.int64)).reshape(-1)
    jac = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=255)(p, t)
    acc = MulticlassAccuracy(num_classes=k, average="micro", ignore_index=255)(p, t)
    assert f["mIoU"] == pytest.approx(float(jac), abs=1e-6)
    assert f["pixel_accuracy"] == pytest.approx(float(acc), abs=1e-6)


def test_nearest_resize_of_the_prediction():
    ref = np.kron(np.array([[0, 1], [2, 3]], np.uint8), np.ones((4, 4), np.uint8))[..., None]
    pred = np.array([[0, 1], [2, 3]], np.uint8)[..., None]
    m = SegmentationMetric()
    assert m.update([pred], [ref]) == [1.0]


def _det(boxes, classes, scores=None):
    return {"boxes": [list(map(float, b)) for b in boxes], "classes": list(classes),
            "scores": list(scores if scores is not None else [1.0] * len(boxes))}


def test_ap_of_one_class_matches_hand_computation():
    ref = _det([[0, 0, .2, .2], [.5, .5, .9, .9]], ["cat", "cat"])
    pred = _det([[0, 0, .2, .2], [.3, .0, .4, .1], [.5, .5, .9, .9]], ["cat"] * 3, [.9, .8, .7])
    m = DetMetric()
    [score] = m.update([pred], [ref])
    # TP, FP, TP: recall .5 .5 1, precision 1 .5 .667 -> envelope 1 .667 .667; 51 recall points <= .5 read 1,
    # the other 50 read 2/3 (IoU 1 for both matches: the same at every threshold)
    expected = (51 + 50 * 2 / 3) / 101
    f = m.compute()
    assert f["mAP"] == pytest.approx(expected) == score and f["mAP50"] == pytest.approx(expected)


def test_class_names_matter_and_unreferenced_classes_are_left_out():
    ref = _det([[0, 0, .5, .5]], ["traffic light"])
    pred = _det([[0, 0, .5, .5], [0, 0, .5, .5]], ["traffic_light", "dog"], [.9, .95])
    m = DetMetric()
    assert m.update([pred], [ref]) == [pytest.approx(1.0)]  # 'dog' has no reference: not a class of the evaluation
    m.update([_det([], [])], [ref])
    assert m.compute()["mAP"] == pytest.approx(51 / 101)  # the second image's missed box halves the recall
    assert np.isnan(DetMetric().update([pred], [_det([], [])])[0])


def test_reference_boxes_below_the_threshold_are_dropped():
    ref = _det([[0, 0, .5, .5], [.5, .5, 1, 1]], ["cat", "cat"], [0.9, 0.3])
    assert DetMetric().update([_det([[0, 0, .5, .5]], ["cat"])], [ref]) == [pytest.approx(1.0)]
    assert DetMetric(reference_threshold=0).update([_det([[0, 0, .5, .5]], ["cat"])], [ref])[0] < 1


def test_greedy_match_takes_the_best_free_reference():
    ious = np.array([[0.6, 0.9], [0.95, 0.7]])
    m = greedy_match(ious, np.array([0.5, 0.92]))
    assert m.tolist() == [[True, True], [False, True]]  # at .92 the first detection finds nothing


def _random_dets(rng, n_img, classes, w=64, h=48):
    preds, refs = [], []
    for _ in range(n_img):
        def boxes(n):
            xy = rng.random((n, 2)) * 0.7
            return np.concatenate([xy, xy + 0.05 + rng.random((n, 2)) * 0.3], 1).clip(0, 1)
        gb = boxes(int(rng.integers(0, 5)))
        jitter = gb + rng.normal(0, 0.012, gb.shape)
        pb = np.concatenate([jitter, boxes(int(rng.integers(0, 4)))]).clip(0, 1)
        gc = list(rng.choice(classes, len(gb)))
        pc = [c if rng.random() < 0.8 else rng.choice(classes) for c in gc] + list(rng.choice(classes, len(pb) - len(gb)))
        refs.append(_det(gb, gc))
        preds.append(_det(pb, pc, np.round(rng.random(len(pb)), 3)))
    return preds, refs


def _coco_eval(preds, refs, iou_type, sizes, masks=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = sorted({c for r in refs + preds for c in r["classes"]})
    cat = {c: i + 1 for i, c in enumerate(names)}
    images, anns, dets = [], [], []
    for i, (p, r) in enumerate(zip(preds, refs)):
        h, w = sizes
        images.append({"id": i + 1, "height": h, "width": w})
        for j, (b, c) in enumerate(zip(r["boxes"], r["classes"])):
            x0, y0, x1, y1 = np.asarray(b) * [w, h, w, h]
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": cat[c], "iscrowd": 0,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)}
            if masks is not None:
                ann["segmentation"] = masks[1][i][j]
                ann["area"] = float(masks[2][i][j])
            anns.append(ann)
        for j, (b, c, s) in enumerate(zip(p["boxes"], p["classes"], p["scores"])):
            x0, y0, x1, y1 = np.asarray(b) * [w, h, w, h]
            det = {"image_id": i + 1, "category_id": cat[c], "score": s, "bbox": [x0, y0, x1 - x0, y1 - y0]}
            if masks is not None:
                det["segmentation"] = masks[0][i][j]
            dets.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": v, "name": k} for k, v in cat.items()]}
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:3]


def test_box_map_matches_pycocotools():
    rng = np.random.default_rng(3)
    preds, refs = _random_dets(rng, 12, ["cat", "dog", "traffic light"])
    m = DetMetric(reference_threshold=0)
    m.update(preds[:5], refs[:5])
    m.update(preds[5:], refs[5:])
    f = m.compute()
    ours = [f["mAP"], f["mAP50"], f["mAP75"]]
    assert ours == pytest.approx(list(_coco_eval(preds, refs, "bbox", (48, 64))), abs=1e-9)
    assert 0.2 < ours[0] < 0.9  # a case that discriminates


def test_mask_map_of_sam_instances_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    h, w = 24, 32
    yy, xx = np.mgrid[:h, :w]
    pred_raws, ref_raws, masks = [], [], ([], [], [])
    for _ in range(4):
        def blobs(n):
            c = rng.random((n, 2)) * [h, w]
            r = 2 + rng.random(n) * 6
            return (((yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2)
                    < r[:, None, None] ** 2)
        g = blobs(int(rng.integers(1, 5)))
        p = np.concatenate([np.roll(g, int(rng.integers(-2, 3)), axis=2), blobs(2)])
        ref, pred = encode_instances(g), encode_instances(p, scores=np.round(rng.random(len(p)), 3))
        ref_raws.append(ref)
        pred_raws.append(pred)
        from fourm_sam_instance.masks import decode_instances

        for raw, dest in ((pred, masks[0]), (ref, masks[1])):
            ms = decode_instances(raw)
            dest.append([mask_utils.encode(np.asfortranarray(mm.astype(np.uint8))) for mm in ms])
        masks[2].append([int(mm.sum()) for mm in decode_instances(ref)])
    m = SamInstanceMetric()
    m.update(pred_raws, ref_raws)
    f = m.compute()

    def as_det(raw):
        return _det([i["box"] for i in raw["instances"]], ["object"] * len(raw["instances"]),
                    [i.get("score", 1.0) for i in raw["instances"]])

    preds, refs = [as_det(r) for r in pred_raws], [as_det(r) for r in ref_raws]
    for dest in masks[:2]:
        for row in dest:
            for rle in row:
                rle["counts"] = rle["counts"].decode()
    segm = _coco_eval(preds, refs, "segm", (h, w), masks=masks)
    assert [f["mask_mAP"], f["mask_mAP50"], f["mask_mAP75"]] == pytest.approx(list(segm), abs=1e-9)
    assert f["mask_samples"] == 4.0 and 0.05 < f["mask_mAP"] < 0.95


def test_points_form_predictions_score_by_boxes():
    ref = encode_instances(np.pad(np.ones((1, 4, 4), bool), ((0, 0), (0, 4), (0, 4))))  # box [0, 0, .5, .5]
    points = {"points": [{"xy": [0.1, 0.1], "instances": [{"box": [0, 0, 0.5, 0.5], "tokens": [1] * 16}]},
                         {"xy": [0.2, 0.2], "instances": [{"box": [0, 0, 0.5, 0.5], "tokens": [1] * 16}]}]}
    m = SamInstanceMetric()
    assert m.update([points], [ref]) == [pytest.approx(1.0)]  # the instance both points list counts once
    assert m.compute()["mask_samples"] == 0.0


def test_box_iou_by_hand():
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [4, 4, 5, 5]]).tolist() == [[pytest.approx(1 / 7), 0.0]]
