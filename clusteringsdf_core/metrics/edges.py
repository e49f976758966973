"""Edge accuracy (EA), the boundary metric of ClusteringSDF (paper, Sec. 4.1).

The paper's words: "EA calculates the average Dice value between the edge of predicted
and GT labels, which are paired by matching the densest labels in the predicted result
with each GT label." Our reading, made precise:

* Labels are any int label maps ``(H, W)`` (instance ids, or panoptic ids); GT label
  ``ignore_label`` (default 0, "no instance") is not scored. Every predicted label,
  0 included, can be paired: for ClusteringSDF the predicted 0 is the background
  channel, a segment like any other.
* Pairing: for a GT label g with mask G, the paired predicted label is the one that
  covers most of G, p* = argmax_p |G and P_p| ("densest" predicted label inside G);
  ties go to the smallest label. Several GT labels may pick the same predicted label.
* Edges of a binary mask M: the pixels of M that have a 4-neighbour outside M (the
  inner boundary, one pixel wide). The image border is not an edge.
* Dice(g) = 2 |E(G) and E(P_p*)| / (|E(G)| + |E(P_p*)|), exact pixel agreement; 1 when
  both edge sets are empty (e.g. both masks fill the image).
* EA = mean of Dice(g) over the scored GT labels of all frames, in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EdgeAccuracyResult", "label_edges", "edge_dice_per_label", "edge_accuracy"]


@dataclass(frozen=True)
class EdgeAccuracyResult:
    """EA in percent, the number of (frame, GT label) pairs averaged, per-frame means (percent)."""

    ea: float
    num_labels: int
    per_frame: list[float]


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Edge pixels of a label map: pixels with a 4-neighbour of a different label.

    For a label l, ``label_edges(labels) & (labels == l)`` is exactly the inner
    boundary of the binary mask ``labels == l``. Shapes: (H, W) int -> (H, W) bool.
    """
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def _dense(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(labels.reshape(-1), return_inverse=True)
    return uniq, inverse.reshape(-1)


def edge_dice_per_label(
    pred_labels: np.ndarray, gt_labels: np.ndarray, ignore_label: int | None = 0
) -> dict[int, float]:
    """Edge Dice (0..1) of every scored GT label of one frame (module docstring).

    Shapes: ``pred_labels``, ``gt_labels`` (H, W) int. Returns {GT label: Dice}.
    Vectorised: the edges of all masks come from one neighbour comparison per map,
    and the pairing from one joint histogram.
    """
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"shapes differ: {pred_labels.shape} vs {gt_labels.shape}")
    g_uniq, g_idx = _dense(gt_labels)
    p_uniq, p_idx = _dense(pred_labels)
    n_g, n_p = g_uniq.size, p_uniq.size
    if n_g == 0:
        return {}
    overlap = np.bincount(g_idx * n_p + p_idx, minlength=n_g * n_p).reshape(n_g, n_p)
    best = overlap.argmax(axis=1)  # first maximum: the smallest predicted label on ties

    g_edge = label_edges(gt_labels).reshape(-1)
    p_edge = label_edges(pred_labels).reshape(-1)
    g_edge_count = np.bincount(g_idx[g_edge], minlength=n_g)
    p_edge_count = np.bincount(p_idx[p_edge], minlength=n_p)
    both = g_edge & p_edge
    shared = np.bincount(g_idx[both] * n_p + p_idx[both], minlength=n_g * n_p).reshape(n_g, n_p)

    rows = np.arange(n_g)
    inter = shared[rows, best].astype(np.float64)
    total = (g_edge_count + p_edge_count[best]).astype(np.float64)
    dice = np.where(total > 0, 2.0 * inter / np.maximum(total, 1.0), 1.0)
    return {int(g): float(d) for g, d in zip(g_uniq, dice) if ignore_label is None or g != ignore_label}


def edge_accuracy(
    pred_labels: Sequence[np.ndarray] | np.ndarray,
    gt_labels: Sequence[np.ndarray] | np.ndarray,
    ignore_label: int | None = 0,
) -> EdgeAccuracyResult:
    """EA (percent) over F frames: the mean edge Dice over all scored (frame, GT label) pairs.

    Shapes: F label maps ``(H_f, W_f)`` each (or a stacked ``(F, H, W)`` array).
    ``per_frame`` holds each frame's own mean (NaN for a frame with no scored label).
    """
    if len(pred_labels) != len(gt_labels):
        raise ValueError("pred and gt need one frame count")
    values: list[float] = []
    per_frame: list[float] = []
    for pred, gt in zip(pred_labels, gt_labels):
        dice = list(edge_dice_per_label(pred, gt, ignore_label).values())
        values.extend(dice)
        per_frame.append(100.0 * float(np.mean(dice)) if dice else float("nan"))
    ea = 100.0 * float(np.mean(values)) if values else 0.0
    return EdgeAccuracyResult(ea=ea, num_labels=len(values), per_frame=per_frame)
