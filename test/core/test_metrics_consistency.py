"""Cross-view id consistency and depth error (metrics without GT objects), on cameras
that look at a wall 3 m away, where which pixel sees which point is known exactly."""

import numpy as np
import pytest

from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.metrics.consistency import (covisible_matches, depth_error, id_consistency,
                                                     merged_detections, overlapping_pairs)

W, H, WALL_Y = 64, 48, 3.0
K = Intrinsics(50.0, 50.0, W / 2, H / 2, W, H)
# OpenCV camera (x right, y down, z forward) looking along world +y, z up.
R = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = turn @ R
    T[:3, 3] = (x, 0.0, 0.0)
    return T


def _wall_x(T: np.ndarray) -> np.ndarray:
    """World x of the wall point each pixel of a camera at pose T (looking along +y) sees."""
    u = np.arange(W) + 0.5
    return np.broadcast_to(T[0, 3] + (u - K.cx) / K.fx * WALL_Y, (H, W))


def _ids(T: np.ndarray, left: int, right: int) -> np.ndarray:
    return np.where(_wall_x(T) < 0.0, left, right)


def test_pixels_are_matched_to_the_pixels_that_see_the_same_point():
    A, B = _pose(0.0), _pose(0.5)
    depth = np.full((H, W), WALL_Y)
    m = covisible_matches(depth, K, A, depth, K, B)
    xa, xb = _wall_x(A).ravel()[m.a], _wall_x(B).ravel()[m.b]
    assert len(m.a) > 0.8 * H * W and m.valid_a == H * W
    assert np.abs(xa - xb).max() <= WALL_Y / K.fx + 1e-9          # within one pixel's footprint
    np.testing.assert_array_equal(m.a // W, m.b // W)               # same row: a sideways move
    # the part of A's image left of what B sees has no partner
    assert len(m.a) == pytest.approx(H * (W - 0.5 / WALL_Y * K.fx), abs=H)


def test_occluded_and_invalid_pixels_drop_out():
    A, B = _pose(0.0), _pose(0.5)
    depth_a = np.full((H, W), WALL_Y)
    depth_a[:, :10] = 0.0                                           # no depth
    depth_b = np.full((H, W), WALL_Y)
    depth_b[20:30, :] = 1.0                                         # a bar in front of the wall in B
    m = covisible_matches(depth_a, K, A, depth_b, K, B)
    assert m.valid_a == H * (W - 10)
    assert not np.isin(m.a % W, np.arange(10)).any()
    assert not np.isin(m.b // W, np.arange(20, 30)).any()


def test_id_consistency_is_one_for_fused_ids_and_low_for_per_view_ids():
    A, B = _pose(0.0), _pose(0.5)
    depth = np.full((H, W), WALL_Y)
    m = covisible_matches(depth, K, A, depth, K, B)
    fused = id_consistency(_ids(A, 1, 2), _ids(B, 1, 2), m)
    assert fused.consistency == pytest.approx(1.0, abs=1.0 / W) and fused.both_labelled == 1.0
    per_view = id_consistency(_ids(A, 1, 2), _ids(B, 7, 5), m)    # the same segments, other numbers
    assert per_view.consistency < 0.05 and per_view.compared == fused.compared
    half = id_consistency(_ids(A, 1, 2), _ids(B, 0, 2), m)         # B leaves the left object unlabelled
    assert 0.0 < half.both_labelled < 1.0 and half.consistency == pytest.approx(half.both_labelled, abs=0.05)
    empty = id_consistency(np.zeros((H, W), int), np.zeros((H, W), int), m)
    assert empty.compared == 0 and np.isnan(empty.consistency)


def test_overlapping_pairs_keep_views_that_share_the_wall():
    poses = [_pose(0.0), _pose(0.5), _pose(0.0, yaw_deg=180.0), _pose(3.0)]
    depths = [np.full((H, W), WALL_Y)] * 4
    pairs = overlapping_pairs(depths, [K] * 4, poses, min_overlap=0.3, stride=2)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 3)]
    assert pairs[0][2] > pairs[1][2] >= 0.3
    assert overlapping_pairs(depths, [K] * 4, poses, min_overlap=0.3, stride=2, max_pairs=1) == pairs[:1]


def test_depth_error_over_pixels_valid_in_both():
    measured = np.full((4, 5), 2.0)
    measured[0, 0] = 0.0
    rendered = measured + 0.1
    rendered[1, 1] = np.nan
    rendered[2, 2] = 2.5
    err = depth_error(rendered, measured)
    assert err.pixels == 18 and err.median_m == pytest.approx(0.1)
    assert err.mean_m == pytest.approx((17 * 0.1 + 0.5) / 18)
    with pytest.raises(ValueError, match="shape"):
        depth_error(rendered[:2], measured)


def test_merged_detections_counts_pairs_of_segmenter_objects_given_one_id():
    segments = np.zeros((10, 40), np.int32)
    classes = np.zeros((10, 40), np.int32)
    fused = np.zeros((10, 40), np.int32)
    for i, (x0, cls, fused_id) in enumerate([(0, 5, 7), (8, 5, 7), (16, 6, 8), (24, 0, 7), (32, 5, 0)], 1):
        segments[:, x0:x0 + 8], classes[:, x0:x0 + 8], fused[:, x0:x0 + 8] = i, cls, fused_id
    fused[0, 0:8] = 8                                   # a minority of another id does not count
    # objects 1, 2 (class 5) and 3 (class 6) and 5 (class 5, no fused id); segment 4 is class 0
    assert merged_detections(segments, classes, fused) == (6, 1)
    assert merged_detections(segments, classes, fused, is_object=lambda c: c == 5) == (3, 1)
    assert merged_detections(segments, classes, np.full_like(fused, 3)) == (6, 6)
    assert merged_detections(segments, classes, fused, min_pixels=100) == (0, 0)
