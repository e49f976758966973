"""PQ^scene, per-frame PQ and mIoU on hand-computed cases and against torchmetrics."""

import numpy as np
import pytest

from clusteringsdf_core.data.classes import SCANNET_REDUCED
from clusteringsdf_core.metrics.panoptic import (
    mean_iou,
    panoptic_quality_frame,
    panoptic_quality_scene,
    resize_labels_nearest,
)

# Toy class table: 0 void, 1 stuff ("wall"), 2 and 3 things.
IS_THING = np.array([False, False, True, True])


def a(rows):
    return np.array(rows, dtype=np.int32)


# Two 2x4 frames of one scene: a wall on the left, thing instance 5 on the right.
GT_SEM = a([[1, 1, 2, 2], [1, 1, 2, 2]])
GT_INST = a([[0, 0, 5, 5], [0, 0, 5, 5]])


def test_scene_pq_of_ground_truth_is_100():
    frames_sem = [GT_SEM, GT_SEM]
    frames_inst = [GT_INST, GT_INST]
    res = panoptic_quality_scene(frames_sem, frames_inst, frames_sem, frames_inst, IS_THING)
    assert res.pq == pytest.approx(100.0)
    assert res.sq == pytest.approx(100.0)
    assert res.rq == pytest.approx(100.0)
    assert (res.tp, res.fp, res.fn) == (2, 0, 0)
    assert res.classes == [1, 2]


def test_scene_pq_hand_computed_inconsistent_ids():
    # Prediction: right object called 7 in frame 0 and 8 in frame 1.
    # Scene segments: GT (2,5) area 8; predicted (2,7) area 4 and (2,8) area 4.
    # IoU((2,7),(2,5)) = 4 / 8 = 0.5, not > 0.5: no match -> class 2: TP 0, FP 2, FN 1, PQ 0.
    # Wall: GT (1,0) area 8 = predicted (1,0): IoU 1, TP -> class 1 PQ = SQ = RQ = 100.
    # Means over classes {1, 2}: PQ 50, SQ (100 + 0)/2 = 50, RQ (100 + 0/(0+1+0.5))/2 = 50.
    pred_inst = [a([[0, 0, 7, 7], [0, 0, 7, 7]]), a([[0, 0, 8, 8], [0, 0, 8, 8]])]
    res = panoptic_quality_scene([GT_SEM, GT_SEM], pred_inst, [GT_SEM, GT_SEM], [GT_INST, GT_INST], IS_THING)
    assert res.pq == pytest.approx(50.0)
    assert res.sq == pytest.approx(50.0)
    assert res.rq == pytest.approx(50.0)
    c2 = res.per_class[2]
    assert (c2.tp, c2.fp, c2.fn) == (0, 2, 1)
    assert res.per_class[1].pq == pytest.approx(100.0)


def test_scene_pq_hand_computed_partial_overlap():
    # One frame 2x4 GT: wall cols 0-1, thing 5 cols 2-3 (areas 4 and 4).
    # Predicted thing (2,1) covers cols 1-3 (area 6): inter 4, union 6 -> IoU 2/3, TP.
    # Predicted wall (1,0) covers col 0 (area 2): inter 2, union 4 -> IoU 1/2, no match:
    # class 1 TP 0, FP 1, FN 1 -> PQ 0. Class 2: PQ = SQ = 66.67, RQ = 100.
    pred_sem = a([[1, 2, 2, 2], [1, 2, 2, 2]])
    pred_inst = a([[0, 1, 1, 1], [0, 1, 1, 1]])
    res = panoptic_quality_scene([pred_sem], [pred_inst], [GT_SEM], [GT_INST], IS_THING)
    assert res.per_class[2].pq == pytest.approx(200 / 3)
    assert res.per_class[2].sq == pytest.approx(200 / 3)
    assert res.per_class[2].rq == pytest.approx(100.0)
    assert (res.per_class[1].tp, res.per_class[1].fp, res.per_class[1].fn) == (0, 1, 1)
    assert res.pq == pytest.approx(100 / 3)
    assert res.sq == pytest.approx(100 / 3)
    assert res.rq == pytest.approx(50.0)


def _random_scene(rng, frames=6, shape=(24, 32)):
    """Blocky GT: wall + floor-like stuff and a few thing instances seen in several frames."""
    sems, insts = [], []
    for _ in range(frames):
        sem = np.ones(shape, np.int32)
        inst = np.zeros(shape, np.int32)
        sem[shape[0] // 2:, :] = 1
        for obj in range(1, 5):
            y, x = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
            h, w = rng.integers(3, 7), rng.integers(3, 7)
            sem[y:y + h, x:x + w] = 2 + obj % 2
            inst[y:y + h, x:x + w] = obj
        sem[rng.random(shape) < 0.03] = 0  # void specks
        sems.append(sem)
        insts.append(np.where(sem == 0, 0, inst).astype(np.int32))
    return sems, insts


def test_scene_pq_consistent_relabel_is_invariant_per_frame_relabel_is_not():
    rng = np.random.default_rng(0)
    sems, insts = _random_scene(rng)
    base = panoptic_quality_scene(sems, insts, sems, insts, IS_THING)
    assert base.pq == pytest.approx(100.0)

    perm = np.array([0, 41, 17, 99, 3])  # one relabelling for all frames (0 stays 0)
    consistent = [perm[i].astype(np.int32) for i in insts]
    same = panoptic_quality_scene(sems, consistent, sems, insts, IS_THING)
    assert same.pq == pytest.approx(100.0)

    per_frame = []
    for f, inst in enumerate(insts):  # a different permutation in each frame
        p = np.concatenate([[0], np.roll(np.arange(1, 5), f) + 10])
        per_frame.append(p[inst].astype(np.int32))
    lowered = panoptic_quality_scene(sems, per_frame, sems, insts, IS_THING)
    assert lowered.pq < 90.0
    # Stuff (class 1) has no instance ids, so it still matches perfectly.
    assert lowered.per_class[1].pq == pytest.approx(100.0)
    # Each frame on its own is still perfect: only the scene metric sees the swap.
    for f in range(len(sems)):
        assert panoptic_quality_frame(sems[f], per_frame[f], sems[f], insts[f], IS_THING).pq == pytest.approx(100.0)


def test_scene_drops_gt_void_pixels():
    # GT void in col 3; the prediction puts a thing segment (3,9) exactly there.
    # Those pixels are dropped before matching, so (3,9) vanishes: PQ stays 100.
    gt_sem = a([[1, 1, 2, 0], [1, 1, 2, 0]])
    gt_inst = a([[0, 0, 5, 0], [0, 0, 5, 0]])
    pred_sem = a([[1, 1, 2, 3], [1, 1, 2, 3]])
    pred_inst = a([[0, 0, 5, 9], [0, 0, 5, 9]])
    res = panoptic_quality_scene([pred_sem], [pred_inst], [gt_sem], [gt_inst], IS_THING)
    assert res.pq == pytest.approx(100.0)
    assert res.fp == 0


def test_scene_drops_classes_below_half_percent():
    # 1000 non-void GT pixels: wall 500, thing 2 (id 1) 497, thing 3 (id 2) 3 px = 0.3% < 0.5%.
    gt_sem = np.ones((10, 100), np.int32)
    gt_inst = np.zeros((10, 100), np.int32)
    gt_sem[5:, :] = 2
    gt_inst[5:, :] = 1
    gt_sem[9, 97:] = 3
    gt_inst[9, 97:] = 2
    # The prediction misses the tiny class 3 (calls it thing 2, id 1).
    pred_sem = np.where(gt_sem == 3, 2, gt_sem).astype(np.int32)
    pred_inst = np.where(gt_sem == 3, 1, gt_inst).astype(np.int32)
    res = panoptic_quality_scene([pred_sem], [pred_inst], [gt_sem], [gt_inst], IS_THING)
    # Class 3 dropped: its 3 GT px become void. Class 2: GT 497 px, predicted 500 px of
    # which 3 on void -> IoU = 497 / (500 - 3 + 497 - 497) = 1. PQ over {1, 2} = 100.
    assert res.classes == [1, 2]
    assert res.pq == pytest.approx(100.0)
    # With the drop disabled, class 3 is a missed segment: class 3 PQ 0 (FN 1), and class 2
    # IoU = 497/500 -> PQ over three classes = (100 + 99.4 + 0) / 3.
    full = panoptic_quality_scene([pred_sem], [pred_inst], [gt_sem], [gt_inst], IS_THING, min_class_fraction=0.0)
    assert full.classes == [1, 2, 3]
    assert full.per_class[3].fn == 1
    assert full.pq == pytest.approx((100 + 100 * 497 / 500 + 0) / 3)


def test_scene_small_predicted_class_is_void_not_fp():
    # A predicted segment of class 3 covering 0.2% of the pixels is dropped with its class
    # (predicted void): it is neither FP nor does it hurt the GT segment's IoU.
    gt_sem = np.ones((10, 100), np.int32)
    gt_inst = np.zeros((10, 100), np.int32)
    gt_sem[5:, :] = 2
    gt_inst[5:, :] = 1
    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    pred_sem[9, 98:] = 3
    pred_inst[9, 98:] = 4
    res = panoptic_quality_scene([pred_sem], [pred_inst], [gt_sem], [gt_inst], IS_THING)
    assert res.classes == [1, 2]
    assert res.pq == pytest.approx(100.0)
    assert res.per_class[2].sq == pytest.approx(100.0)


def test_frame_pq_void_rules_hand_computed():
    # GT: void block at rows 0-1, cols 2-3; wall cols 0-1; thing (2,3) row 2, cols 2-3.
    gt_sem = a([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 2, 2]])
    gt_inst = a([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 3, 3]])
    # Case A: predicted (2,4) lies entirely on void -> not FP. (2,9) = GT (2,3): TP. Wall TP.
    pred_sem = a([[1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2]])
    pred_inst = a([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 9, 9]])
    res = panoptic_quality_frame(pred_sem, pred_inst, gt_sem, gt_inst, IS_THING)
    assert (res.tp, res.fp, res.fn) == (2, 0, 0)
    assert res.pq == pytest.approx(100.0)

    # Case B: (2,4) grows onto col 1 (area 6, 4 on void = 67% > 50%): still not FP.
    # Wall: GT area 6, predicted col 0 + (2,1) (area 4): inter 4, union 6 -> IoU 2/3, TP.
    # Class 1 PQ 66.67; class 2: TP IoU 1, no FP -> 100. PQ = 83.33.
    pred_sem_b = a([[1, 2, 2, 2], [1, 2, 2, 2], [1, 1, 2, 2]])
    pred_inst_b = a([[0, 4, 4, 4], [0, 4, 4, 4], [0, 0, 9, 9]])
    res_b = panoptic_quality_frame(pred_sem_b, pred_inst_b, gt_sem, gt_inst, IS_THING)
    assert (res_b.per_class[2].tp, res_b.per_class[2].fp) == (1, 0)
    assert (res_b.per_class[1].tp, res_b.per_class[1].fp, res_b.per_class[1].fn) == (1, 0, 0)
    assert res_b.pq == pytest.approx((200 / 3 + 100) / 2)

    # Case C: (2,4) covers rows 0-1 entirely (area 8, 4 on void = 50%, not > 50%): a FP.
    # Wall: predicted only row 2 cols 0-1 (area 2), GT area 6 -> IoU 1/3: FP 1, FN 1.
    # Class 2: TP 1 (IoU 1), FP 1 -> PQ = 1 / (1 + 0.5) = 66.67. PQ = (0 + 66.67) / 2.
    pred_sem_c = a([[2, 2, 2, 2], [2, 2, 2, 2], [1, 1, 2, 2]])
    pred_inst_c = a([[4, 4, 4, 4], [4, 4, 4, 4], [0, 0, 9, 9]])
    res_c = panoptic_quality_frame(pred_sem_c, pred_inst_c, gt_sem, gt_inst, IS_THING)
    assert (res_c.per_class[2].tp, res_c.per_class[2].fp) == (1, 1)
    assert res_c.pq == pytest.approx(100 / 3)
    assert res_c.rq == pytest.approx((0 + 100 / 1.5) / 2)


def test_frame_pq_void_removed_from_union():
    # GT thing (2,1): cols 0-2 (area 6); GT void col 3. Prediction (2,1): cols 1-3 (area 6,
    # 2 px on GT void), predicted void (class 0) on col 0. inter 4.
    # Plain union would be 6 + 6 - 4 = 8 (IoU 1/2, no match). Removing the GT-void pixels
    # of the prediction (2) and the predicted-void pixels of the GT (2): union 4 -> IoU 1.
    gt_sem = a([[2, 2, 2, 0], [2, 2, 2, 0]])
    gt_inst = a([[1, 1, 1, 0], [1, 1, 1, 0]])
    pred_sem = a([[0, 2, 2, 2], [0, 2, 2, 2]])
    pred_inst = a([[0, 1, 1, 1], [0, 1, 1, 1]])
    res = panoptic_quality_frame(pred_sem, pred_inst, gt_sem, gt_inst, IS_THING)
    assert res.per_class[2].tp == 1
    assert res.sq == pytest.approx(100.0)


def _blocky(rng, shape, cell, values):
    small = rng.choice(values, size=(shape[0] // cell, shape[1] // cell))
    return np.kron(small, np.ones((cell, cell), np.int64)).astype(np.int32)


def test_frame_pq_matches_torchmetrics_oracle():
    torch = pytest.importorskip("torch")
    tm_detection = pytest.importorskip("torchmetrics.detection")
    things, stuffs = {2, 3}, {1}
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(25):
        shape = (24, 24)
        gt_sem = _blocky(rng, shape, 6, [0, 1, 1, 2, 3])
        gt_inst = np.where(gt_sem >= 2, _blocky(rng, shape, 6, [1, 2]), 0).astype(np.int32)
        # Prediction: GT with cells of noise at a finer grain, so IoUs straddle 0.5.
        noise = _blocky(rng, shape, 3, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3])
        flip = _blocky(rng, shape, 3, [False, False, False, True]).astype(bool)
        pred_sem = np.where(flip, noise, gt_sem).astype(np.int32)
        pred_inst = np.where(flip, _blocky(rng, shape, 3, [1, 2, 3]), gt_inst).astype(np.int32)

        ours = panoptic_quality_frame(pred_sem, pred_inst, gt_sem, gt_inst, IS_THING)
        metric = tm_detection.PanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True,
                                              return_sq_and_rq=True)
        preds_t = torch.from_numpy(np.stack([pred_sem, pred_inst], -1)[None].astype(np.int64))
        target_t = torch.from_numpy(np.stack([gt_sem, gt_inst], -1)[None].astype(np.int64))
        metric.update(preds_t, target_t)
        pq, sq, rq = (100.0 * float(v) for v in metric.compute())
        if np.isnan(pq):
            continue
        assert ours.pq == pytest.approx(pq, abs=1e-4)
        assert ours.sq == pytest.approx(sq, abs=1e-4)
        assert ours.rq == pytest.approx(rq, abs=1e-4)
        checked += 1
    assert checked >= 20


def test_frame_pq_accepts_class_table():
    sem = np.full((4, 4), SCANNET_REDUCED.id_of("wall"), np.int32)
    sem[:2, :2] = SCANNET_REDUCED.id_of("chair")
    inst = np.where(sem == SCANNET_REDUCED.id_of("chair"), 3, 9).astype(np.int32)  # wall ids zeroed
    res = panoptic_quality_frame(sem, np.where(inst == 9, 1, inst).astype(np.int32), sem, inst, SCANNET_REDUCED)
    assert res.pq == pytest.approx(100.0)


def test_mean_iou_hand_computed():
    # GT      [1, 1, 2, 2, 0]   (last pixel void: ignored whatever is predicted)
    # pred    [1, 2, 2, 2, 1]
    # class 1: inter 1, GT 2, pred 1 -> IoU 1/2; class 2: inter 2, GT 2, pred 3 -> IoU 2/3.
    gt = a([[1, 1, 2, 2, 0]])
    pred = a([[1, 2, 2, 2, 1]])
    res = mean_iou([pred], [gt], num_classes=4)
    assert res.per_class == pytest.approx({1: 50.0, 2: 200 / 3})
    assert res.miou == pytest.approx((50 + 200 / 3) / 2)
    assert res.confusion[1, 2] == 1 and res.confusion.sum() == 4


def test_mean_iou_skips_small_classes_and_counts_void_prediction_as_miss():
    # 1000 px: class 1: 600, class 2: 398, class 3: 2 (0.2% of GT, never predicted elsewhere).
    gt = np.ones((1, 1000), np.int32)
    gt[0, 600:998] = 2
    gt[0, 998:] = 3
    pred = gt.copy()
    pred[0, 998:] = 2  # class 3 missed: class 3 is < 0.5% in GT and prediction -> skipped
    pred[0, :100] = 0  # predicted void on 100 wall pixels: a miss for class 1
    res = mean_iou([pred], [gt], num_classes=4)
    assert sorted(res.per_class) == [1, 2]
    assert res.per_class[1] == pytest.approx(100 * 500 / 600)
    assert res.per_class[2] == pytest.approx(100 * 398 / 400)


def test_resize_labels_nearest_uses_pixel_centres():
    labels = a([[1, 2], [3, 4]])
    up = resize_labels_nearest(labels, (4, 4))
    assert up.dtype == np.int32
    np.testing.assert_array_equal(up, a([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]))
    big = np.arange(36, dtype=np.int32).reshape(6, 6)
    down = resize_labels_nearest(big, (3, 3))
    # centres of output pixels 0, 1, 2 land on input 1, 3, 5
    np.testing.assert_array_equal(down, big[1::2, 1::2])
    assert set(np.unique(resize_labels_nearest(big, (512, 512)))) <= set(big.ravel().tolist())
