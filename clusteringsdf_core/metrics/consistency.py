"""Metrics that need no ground-truth objects: cross-view id consistency and depth error.

A real recording without annotations still says two things about a labelled scene:

- **Cross-view id consistency.** Two views that see the same surface point should give
  it the same object id. :func:`covisible_matches` pairs the pixels of view A with the
  pixels of view B that see the same point: A's measured depth back-projected, moved
  into B's camera, projected, and kept where B's measured depth agrees (so occluded
  and out-of-view points drop out). :func:`id_consistency` is the share of those
  pairs, among the ones where either view names an object (id > 0), whose ids are
  equal. Per-view ids of a 2D segmenter agree across views only by chance; ids fused
  by a 3D model should agree wherever the model is right. A map that calls everything
  one object scores 1.0, so the measure goes with the number of objects, the share
  of pairs where both views name an object (``both_labelled``), and
  :func:`merged_detections`: how many pairs of objects that the 2D segmenter names
  apart in one view (e.g. a table and a chair the detector boxed) the map merges.
- **Depth error.** :func:`depth_error` compares a rendered depth map with the measured
  one on the pixels where both are valid.

:func:`overlapping_pairs` picks the view pairs to compare: those whose co-visible
share (of A's valid pixels) reaches a minimum.

Scores are fractions in [0, 1] (not percent), depth errors metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from clusteringsdf_core.geometry.camera import backproject, project

__all__ = ["CovisibleMatches", "covisible_matches", "id_consistency", "IdConsistency", "merged_detections",
           "overlapping_pairs", "depth_error", "DepthError"]


@dataclass(frozen=True)
class CovisibleMatches:
    """Pixel pairs of two views that see the same surface point: flat pixel indices
    ``a`` into view A's image and ``b`` into view B's; ``valid_a``: how many pixels of
    A (at the sampling stride) had a depth."""

    a: np.ndarray
    b: np.ndarray
    valid_a: int

    @property
    def overlap(self) -> float:
        """Share of A's sampled valid pixels that B sees too."""
        return len(self.a) / self.valid_a if self.valid_a else 0.0


def covisible_matches(depth_a: np.ndarray, K_a, T_a: np.ndarray, depth_b: np.ndarray, K_b,
                      T_b: np.ndarray, *, abs_tol_m: float = 0.03, rel_tol: float = 0.02,
                      stride: int = 1) -> CovisibleMatches:
    """Pixels of A (every ``stride``-th row and column) whose surface point B sees.

    ``depth_*``: (H, W) z-depth in metres (<= 0 or non-finite = invalid); ``K_*``:
    intrinsics of that image size (:class:`~clusteringsdf_core.data.frame.Intrinsics`);
    ``T_*``: 4x4 camera-to-world poses. A's point projected into B counts when it is in
    front of B, inside B's image, and B's depth at that pixel is within
    ``max(abs_tol_m, rel_tol * z)`` of the point's depth in B.
    """
    depth_a = np.asarray(depth_a, dtype=np.float64)
    depth_b = np.asarray(depth_b, dtype=np.float64)
    h, w = depth_a.shape
    rows, cols = np.mgrid[0:h:stride, 0:w:stride]
    rows, cols = rows.ravel(), cols.ravel()
    z = depth_a[rows, cols]
    ok = np.isfinite(z) & (z > 0)
    rows, cols, z = rows[ok], cols[ok], z[ok]
    world = backproject(cols + 0.5, rows + 0.5, z, K_a, T_a)
    T_b = np.asarray(T_b, dtype=np.float64)
    cam_b = (world - T_b[:3, 3]) @ T_b[:3, :3]            # world -> camera B (R^T (p - t))
    u, v, front = project(cam_b, K_b)
    hb, wb = depth_b.shape
    inside = front & (u >= 0) & (u < wb) & (v >= 0) & (v < hb)
    idx = np.nonzero(inside)[0]
    zb = depth_b[v[idx], u[idx]]
    zp = cam_b[idx, 2]
    agree = np.isfinite(zb) & (zb > 0) & (np.abs(zb - zp) <= np.maximum(abs_tol_m, rel_tol * zp))
    idx = idx[agree]
    return CovisibleMatches(a=rows[idx] * w + cols[idx], b=v[idx] * wb + u[idx], valid_a=int(ok.sum()))


@dataclass(frozen=True)
class IdConsistency:
    """``consistency``: share of the compared pairs with equal ids; ``compared``: pairs
    where either view names an object; ``both_labelled``: share of those where both do."""

    consistency: float
    compared: int
    both_labelled: float


def id_consistency(ids_a: np.ndarray, ids_b: np.ndarray, matches: CovisibleMatches) -> IdConsistency:
    """Agreement of two views' ids (0 = no object) over co-visible pixel pairs; pairs
    where neither view names an object are not compared."""
    a = np.asarray(ids_a).ravel()[matches.a]
    b = np.asarray(ids_b).ravel()[matches.b]
    compared = (a > 0) | (b > 0)
    n = int(compared.sum())
    if n == 0:
        return IdConsistency(float("nan"), 0, float("nan"))
    a, b = a[compared], b[compared]
    return IdConsistency(float(np.mean(a == b)), n, float(np.mean((a > 0) & (b > 0))))


def merged_detections(segment_ids: np.ndarray, segment_classes: np.ndarray, fused_ids: np.ndarray, *,
                      is_object: Callable[[int], bool] = lambda c: c > 0, min_pixels: int = 20) -> tuple[int, int]:
    """The other side of :func:`id_consistency`, which a map that merges everything
    wins: of the pairs of objects the 2D segmenter names in one view (segments of
    ``min_pixels`` or more whose majority class passes ``is_object``, e.g. the
    detector's boxes), how many the map merges, both taking the same non-zero fused id
    as the majority of their pixels. Returns (pairs, merged)."""
    segment_ids = np.asarray(segment_ids).ravel()
    segment_classes = np.asarray(segment_classes).ravel()
    fused_ids = np.asarray(fused_ids).ravel()
    majority = []
    for i in np.unique(segment_ids[segment_ids > 0]):
        inside = segment_ids == i
        if inside.sum() < min_pixels or not is_object(int(np.bincount(segment_classes[inside]).argmax())):
            continue
        majority.append(int(np.bincount(fused_ids[inside]).argmax()))
    ids = np.asarray(majority, np.int64)
    pairs = len(ids) * (len(ids) - 1) // 2
    counts = np.bincount(ids[ids > 0]) if (ids > 0).any() else np.zeros(0, np.int64)
    return pairs, int((counts * (counts - 1) // 2).sum())


def overlapping_pairs(depths: list[np.ndarray], intrinsics: list, poses: list[np.ndarray], *,
                      min_overlap: float = 0.3, max_pairs: int | None = None, stride: int = 4,
                      **tolerances) -> list[tuple[int, int, float]]:
    """(i, j, overlap) for the view pairs i < j whose co-visible share (of view i's
    sampled valid pixels, :func:`covisible_matches` at ``stride``) is at least
    ``min_overlap``; the most overlapping first, at most ``max_pairs``."""
    pairs = []
    for i in range(len(depths)):
        for j in range(i + 1, len(depths)):
            m = covisible_matches(depths[i], intrinsics[i], poses[i], depths[j], intrinsics[j], poses[j],
                                  stride=stride, **tolerances)
            if m.overlap >= min_overlap:
                pairs.append((i, j, m.overlap))
    pairs.sort(key=lambda p: -p[2])
    return pairs[:max_pairs] if max_pairs is not None else pairs


@dataclass(frozen=True)
class DepthError:
    """Absolute depth error in metres over ``pixels`` valid in both maps."""

    median_m: float
    mean_m: float
    pixels: int


def depth_error(rendered: np.ndarray, measured: np.ndarray) -> DepthError:
    """|rendered - measured| where both are finite and positive."""
    rendered = np.asarray(rendered, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if rendered.shape != measured.shape:
        raise ValueError(f"depth maps differ in shape: rendered {rendered.shape}, measured {measured.shape}")
    ok = np.isfinite(rendered) & np.isfinite(measured) & (rendered > 0) & (measured > 0)
    if not ok.any():
        return DepthError(float("nan"), float("nan"), 0)
    err = np.abs(rendered[ok] - measured[ok])
    return DepthError(float(np.median(err)), float(err.mean()), int(ok.sum()))
