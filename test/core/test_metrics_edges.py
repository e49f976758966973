"""Edge accuracy (EA) on hand-computed label maps."""

import numpy as np
import pytest

from clusteringsdf_core.metrics.edges import edge_accuracy, edge_dice_per_label, label_edges


def a(rows):
    return np.array(rows, dtype=np.int32)


# 5x5 GT: object 1 is the 3x3 block rows 1-3, cols 1-3.
GT = a([[0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0]])
# Prediction: the block shifted one column right, called 5.
SHIFTED = a([[0, 0, 0, 0, 0],
             [0, 0, 5, 5, 5],
             [0, 0, 5, 5, 5],
             [0, 0, 5, 5, 5],
             [0, 0, 0, 0, 0]])


def test_label_edges_is_inner_boundary_without_image_border():
    edges = label_edges(SHIFTED)
    # Block 5 edges: left column (1..3, 2), top row (1, 2..4), bottom row (3, 2..4) = 7 px;
    # (2, 3) is interior and (2, 4) only touches the image border.
    block = edges & (SHIFTED == 5)
    assert block.sum() == 7
    assert not block[2, 3] and not block[2, 4]
    assert not label_edges(np.zeros((3, 3), np.int32)).any()


def test_identical_maps_give_100():
    assert edge_accuracy([GT], [GT]).ea == pytest.approx(100.0)
    # and any consistent renaming of the predicted labels changes nothing
    renamed = np.where(GT == 1, 42, 7).astype(np.int32)
    assert edge_accuracy([renamed], [GT]).ea == pytest.approx(100.0)


def test_shifted_block_hand_computed():
    # Pairing: GT 1 overlaps predicted 5 on 6 px and predicted 0 on 3 px -> paired with 5.
    # GT edges: the 8 ring pixels of the 3x3 block. Predicted edges of 5: 7 px (see above).
    # Shared: (1,2), (1,3), (3,2), (3,3) = 4. Dice = 2 * 4 / (8 + 7) = 8/15.
    dice = edge_dice_per_label(SHIFTED, GT)
    assert list(dice) == [1]  # GT label 0 is not scored
    assert dice[1] == pytest.approx(8 / 15)
    assert edge_accuracy([SHIFTED], [GT]).ea == pytest.approx(100 * 8 / 15)


def test_pairing_takes_the_predicted_label_covering_most_of_the_gt_label():
    # GT 1 split into predicted 5 (cols 1-2, 6 px) and 7 (col 3, 3 px): paired with 5.
    pred = a([[0, 0, 0, 0, 0],
              [0, 5, 5, 7, 0],
              [0, 5, 5, 7, 0],
              [0, 5, 5, 7, 0],
              [0, 0, 0, 0, 0]])
    # Edges of predicted 5 (a 3x2 block with 0 on the left/top/bottom and 7 on the right):
    # all 6 pixels. GT ring: 8 px. Shared: (1,1), (1,2), (2,1), (3,1), (3,2) = 5
    # ((2,2) is an edge of 5 but interior to GT 1). Dice = 2 * 5 / (8 + 6) = 10/14.
    assert edge_dice_per_label(pred, GT)[1] == pytest.approx(10 / 14)


def test_mean_over_all_gt_labels_of_all_frames():
    # Frame 0: perfect (Dice 1 for GT 1). Frame 1: GT 1 as SHIFTED (8/15) plus a second
    # object 2 at the bottom-left corner predicted exactly (Dice 1).
    gt1 = GT.copy()
    gt1[4, 0] = 2
    pred1 = SHIFTED.copy()
    pred1[4, 0] = 9
    # GT 2 = pixel (4,0): its edge is itself (neighbours 0); predicted 9 likewise -> Dice 1.
    # GT 1's edges and the predicted 5's edges are unchanged by the corner pixel.
    res = edge_accuracy([GT, pred1], [GT, gt1])
    assert res.num_labels == 3
    assert res.ea == pytest.approx(100 * (1 + 8 / 15 + 1) / 3)
    assert res.per_frame == pytest.approx([100.0, 100 * (8 / 15 + 1) / 2])


def test_gt_label_missed_entirely_scores_zero():
    # Predicted all background: GT 1 pairs with predicted 0, which has no edges at all.
    dice = edge_dice_per_label(np.zeros_like(GT), GT)
    assert dice[1] == pytest.approx(0.0)
    # Scoring GT label 0 too (ignore_label=None): its edges (the 8 px around the block)
    # do not match the edge-free predicted 0 either.
    assert edge_dice_per_label(np.zeros_like(GT), GT, ignore_label=None) == pytest.approx({0: 0.0, 1: 0.0})
