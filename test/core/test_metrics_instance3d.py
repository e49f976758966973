"""3D instance AP (ScanNet rules) on hand-built vertex labellings."""

import numpy as np
import pytest

from clusteringsdf_core.metrics.instance3d import (
    COCO_THRESHOLDS,
    SCANNET_THRESHOLDS,
    InstancePrediction,
    average_precision_from_matches,
    instance_ap,
    instance_ap_class_agnostic,
    predictions_from_instance_ids,
)

# 40 vertices: GT instance 1 (class 3) on 0-9, instance 2 (class 3) on 10-19,
# instance 3 (class 4) on 20-29, no instance on 30-39.
GT_IDS = np.repeat(np.array([1, 2, 3, 0], dtype=np.int32), 10)
GT_CLASSES = {1: 3, 2: 3, 3: 4}


def mask(*ranges):
    m = np.zeros(GT_IDS.size, dtype=bool)
    for lo, hi in ranges:
        m[lo:hi] = True
    return m


def perfect_predictions(scores=(0.9, 0.8, 0.7)):
    return [InstancePrediction(GT_IDS == i, GT_CLASSES[i], s) for i, s in zip((1, 2, 3), scores)]


def test_perfect_prediction_gives_100():
    res = instance_ap(GT_IDS, GT_CLASSES, perfect_predictions(), min_region_size=1)
    assert (res.ap, res.ap50, res.ap25) == pytest.approx((100.0, 100.0, 100.0))
    assert sorted(res.per_class) == [3, 4]
    agn = instance_ap_class_agnostic(GT_IDS, perfect_predictions(), min_region_size=1)
    assert (agn.ap, agn.ap50, agn.ap25) == pytest.approx((100.0, 100.0, 100.0))


def test_perfect_prediction_from_instance_id_map():
    pred_ids = np.where(GT_IDS > 0, GT_IDS + 10, 0)
    preds = predictions_from_instance_ids(pred_ids, class_of={11: 3, 12: 3, 13: 4})
    assert len(preds) == 3
    assert instance_ap(GT_IDS, GT_CLASSES, preds, min_region_size=1).ap == pytest.approx(100.0)


def test_ap_integration_hand_computed():
    # Detections by score: TP, FP, TP with 2 GT. Operating points (R, P), start (0, 1):
    # (0, 1), (0.5, 1), (0.5, 0.5), (1, 2/3). Weights (R_next - R_prev)/2, with R_-1 = 0
    # and R_next of the last = its own R: 0.25, 0.25, 0.25, 0.25.
    # AP = 0.25 * (1 + 1 + 0.5 + 2/3) = 0.7917.
    ap = average_precision_from_matches(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 2)
    assert ap == pytest.approx(0.25 * (1 + 1 + 0.5 + 2 / 3))
    # A FP ranked last after full recall costs nothing: (0,1),(1,1),(1,0.5) -> 0.5+0.5+0.
    assert average_precision_from_matches(np.array([True, False]), np.array([0.9, 0.1]), 1) == pytest.approx(1.0)
    # Ties in score form one operating point: TP and FP both at 0.5 -> (0,1),(1,0.5) -> 0.75.
    assert average_precision_from_matches(np.array([True, False]), np.array([0.5, 0.5]), 1) == pytest.approx(0.75)
    assert np.isnan(average_precision_from_matches(np.array([], bool), np.array([]), 0))
    assert average_precision_from_matches(np.array([], bool), np.array([]), 3) == 0.0


def test_duplicate_prediction_counts_as_false_positive():
    # Class 3: instance 1 predicted twice (0.9 exact, 0.85 a copy), instance 2 at 0.8:
    # TP, FP, TP -> AP 79.17 (case above) at every threshold; class 4 perfect (100).
    preds = perfect_predictions()
    preds.append(InstancePrediction(GT_IDS == 1, 3, 0.85))
    res = instance_ap(GT_IDS, GT_CLASSES, preds, min_region_size=1)
    expected_c3 = 100 * 0.25 * (1 + 1 + 0.5 + 2 / 3)
    assert res.per_class[3].ap50 == pytest.approx(expected_c3)
    assert res.per_class[4].ap == pytest.approx(100.0)
    assert res.ap == pytest.approx((expected_c3 + 100) / 2)
    assert res.ap < 100.0


def test_iou_thresholds_hand_built():
    # Class 4 prediction on vertices 20-26 (7 of the 10 of instance 3): IoU 7/10 = 0.7.
    # It is a TP for thresholds 0.25, 0.5, 0.55, 0.6, 0.65 (IoU > t) and a FP from 0.7 on
    # (its 7 vertices are all labelled, so it is not ignored).
    preds = [InstancePrediction(mask((20, 27)), 4, 0.9)]
    res = instance_ap(GT_IDS, {3: 4}, preds, min_region_size=1)
    c4 = res.per_class[4]
    assert res.ap25 == pytest.approx(100.0) and res.ap50 == pytest.approx(100.0)
    assert res.ap == pytest.approx(100.0 * 4 / 9)  # 4 of the 9 thresholds 0.50..0.90
    np.testing.assert_allclose(c4.per_threshold, [100, 100, 100, 100, 100, 0, 0, 0, 0, 0])
    assert list(res.thresholds) == pytest.approx([0.25, *SCANNET_THRESHOLDS])
    # Exactly IoU 0.5 is not a match at 0.5 (strict): 5 of 10 vertices -> IoU 0.5.
    half = instance_ap(GT_IDS, {3: 4}, [InstancePrediction(mask((20, 25)), 4, 0.9)], min_region_size=1)
    assert half.ap25 == pytest.approx(100.0) and half.ap50 == pytest.approx(0.0)
    # COCO thresholds: 10 of them, 4 matched.
    coco = instance_ap(GT_IDS, {3: 4}, preds, ap_thresholds=COCO_THRESHOLDS, min_region_size=1)
    assert coco.ap == pytest.approx(40.0)


def test_prediction_on_unlabelled_vertices_is_ignored_but_on_other_objects_is_fp():
    only_c3 = {1: 3, 2: 3, 3: 4}
    base = [InstancePrediction(GT_IDS == 1, 3, 0.5), InstancePrediction(GT_IDS == 2, 3, 0.4)]
    # High-score class-3 prediction on vertices 30-39 (no GT instance): ignored share 1 > t.
    on_void = base + [InstancePrediction(mask((30, 40)), 3, 0.9)]
    assert instance_ap(GT_IDS, only_c3, on_void, class_ids=[3], min_region_size=1).ap == pytest.approx(100.0)
    # The same prediction on the class-4 object (vertices 20-29, class 4 evaluated) is a FP
    # for class 3: points (0,1), (0,0), (0.5,0.5), (1,2/3); weights 0, 0.25, 0.5, 0.25
    # -> AP = 0 + 0 + 0.25 + 1/6 = 41.67.
    on_other = base + [InstancePrediction(mask((20, 30)), 3, 0.9)]
    res = instance_ap(GT_IDS, only_c3, on_other, min_region_size=1)
    assert res.per_class[3].ap50 == pytest.approx(100 * (0.5 * 0.5 + 0.25 * 2 / 3))
    # With class 4 not evaluated, its object's vertices are unlabelled: ignored, AP 100.
    assert instance_ap(GT_IDS, only_c3, on_other, class_ids=[3], min_region_size=1).ap50 == pytest.approx(100.0)
    # Half on void, half on the object: ignored share 0.5 is not > 0.5 -> FP at t = 0.5,
    # but > 0.25 -> ignored at t = 0.25.
    half = base + [InstancePrediction(mask((25, 35)), 3, 0.9)]
    res_half = instance_ap(GT_IDS, only_c3, half, min_region_size=1).per_class[3]
    assert res_half.ap25 == pytest.approx(100.0)
    assert res_half.ap50 < 100.0


def test_class_aware_versus_class_agnostic():
    # Right masks, wrong classes: class-aware AP 0, class-agnostic AP 100.
    preds = [InstancePrediction(GT_IDS == 1, 4, 0.9), InstancePrediction(GT_IDS == 2, 4, 0.8),
             InstancePrediction(GT_IDS == 3, 3, 0.7)]
    aware = instance_ap(GT_IDS, GT_CLASSES, preds, min_region_size=1)
    assert aware.ap50 == pytest.approx(0.0)
    agnostic = instance_ap_class_agnostic(GT_IDS, preds, min_region_size=1)
    assert agnostic.ap50 == pytest.approx(100.0)
    # Restricting the agnostic evaluation to class 3 GT: instance 3 is now unlabelled, so
    # the prediction on it is ignored, not a FP.
    only3 = instance_ap_class_agnostic(GT_IDS, preds, GT_CLASSES, class_ids=[3], min_region_size=1)
    assert only3.per_class[1].num_gt == 2
    assert only3.ap == pytest.approx(100.0)


def test_missing_instance_and_min_region_size():
    # Only instance 1 predicted among class 3's two: points (0,1), (0.5,1) -> AP 0.25+0.25.
    res = instance_ap(GT_IDS, GT_CLASSES, [InstancePrediction(GT_IDS == 1, 3, 0.9)], min_region_size=1)
    assert res.per_class[3].ap50 == pytest.approx(50.0)
    assert res.per_class[4].ap50 == pytest.approx(0.0)  # GT but no prediction
    # With ScanNet's default (100 vertices) every 10-vertex GT instance is left out: NaN.
    small = instance_ap(GT_IDS, GT_CLASSES, perfect_predictions())
    assert np.isnan(small.ap)
    assert small.per_class[3].num_gt == 0 and small.per_class[3].num_pred == 0
