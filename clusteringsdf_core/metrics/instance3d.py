"""3D instance segmentation AP on mesh vertices (ScanNet benchmark rules).

Inputs are per-vertex: GT instance ids ``(V,)`` int (0 = no instance) with a class per
GT instance, and predicted instances, each a boolean vertex mask ``(V,)``, a class id
and a confidence score. Scores are percentages (0..100).

Rules (ScanNet's ``evaluate_semantic_instance``, as described in the benchmark and the
DKNet / UnScene3D papers; our own implementation):

* Evaluated classes: ``class_ids`` (default: every class that has a GT instance).
  Per class c and IoU threshold t, only class-c GT instances and class-c predictions
  meet. GT instances or predictions with fewer than ``min_region_size`` vertices
  (ScanNet: 100) are left out.
* IoU(P, G) = |P and G| / |P or G| over vertices.
* Matching: predictions are taken by decreasing score; each one becomes a TP for the
  not yet matched class-c GT instance with which it has the highest IoU > t. A
  prediction whose IoU > t is only with already matched GT instances is a FP: several
  predictions of one GT instance give one TP and FPs. Any other prediction is a FP,
  unless more than a share t of its vertices is *ignored* (vertices with no GT
  instance, of a GT instance of an unevaluated class, or of a too small class-c GT
  instance); then it does not count at all. Unmatched GT instances are FNs.
  (ScanNet loops over the GT instances instead and lets each keep its best-scoring
  prediction above t; for t >= 0.5 an IoU > t pairs a prediction with at most one GT
  instance and both orders give the same matches.)
* AP integration (ScanNet's): sort predictions by decreasing score; at every distinct
  score s take precision P = TP/(TP+FP) and recall R = TP/#GT of the predictions
  scoring >= s (no monotone envelope), plus the start point (R, P) = (0, 1). With the
  points in that order j = 0..K, AP = sum_j P_j (R_{j+1} - R_{j-1}) / 2 where
  R_{-1} = 0 and R_{K+1} = R_K: each precision weighs half the recall gained from its
  neighbour before to its neighbour after.
* A class without GT instances has AP NaN and is left out of the means; a class with
  GT but no prediction has AP 0. AP@25 and AP@50 are the class means at t = 0.25 and
  0.5; AP is the mean over classes and over ``ap_thresholds``.

About ``ap_thresholds``: the benchmark text says 0.5:0.95:0.05, but ScanNet's script
builds them with ``arange(0.5, 0.95, 0.05)``, which stops at 0.9 (9 values); the default
here is that set, so the numbers compare with published ones (ScanNet, DKNet,
UnScene3D). Pass :data:`COCO_THRESHOLDS` for 0.50..0.95 (10 values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCANNET_THRESHOLDS",
    "COCO_THRESHOLDS",
    "InstancePrediction",
    "ClassAP",
    "InstanceAPResult",
    "predictions_from_instance_ids",
    "average_precision_from_matches",
    "instance_ap",
    "instance_ap_class_agnostic",
]

#: IoU thresholds averaged into AP by ScanNet's script: 0.50, 0.55, ..., 0.90.
SCANNET_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))
#: 0.50, 0.55, ..., 0.95 (the benchmark's written definition, COCO style).
COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: ScanNet's minimum instance size in vertices.
MIN_REGION_SIZE = 100


@dataclass(frozen=True)
class InstancePrediction:
    """One predicted instance: a vertex mask (V,) bool, a class id and a confidence."""

    mask: np.ndarray
    class_id: int
    score: float


@dataclass(frozen=True)
class ClassAP:
    """AP values (percent) of one class; ``per_threshold`` follows ``InstanceAPResult.thresholds``."""

    ap: float
    ap50: float
    ap25: float
    per_threshold: np.ndarray
    num_gt: int
    num_pred: int


@dataclass(frozen=True)
class InstanceAPResult:
    """AP (mean over ``thresholds``), AP@50, AP@25 in percent and the per-class values."""

    ap: float
    ap50: float
    ap25: float
    per_class: dict[int, ClassAP]
    thresholds: np.ndarray  # (T,) the IoU thresholds evaluated: ap_thresholds + 0.25 + 0.5


def predictions_from_instance_ids(
    pred_instance_ids: np.ndarray,
    class_of: Mapping[int, int] | None = None,
    score_of: Mapping[int, float] | None = None,
) -> list[InstancePrediction]:
    """Turn a per-vertex predicted instance id map ``(V,)`` (0 = none) into predictions.

    ``class_of`` gives each id's class (default 1, fine for class-agnostic AP);
    ``score_of`` its confidence (default 1.0).
    """
    ids = np.asarray(pred_instance_ids).reshape(-1)
    out = []
    for pid in np.unique(ids).tolist():
        if pid == 0:
            continue
        cls = 1 if class_of is None else int(class_of[pid])
        score = 1.0 if score_of is None else float(score_of[pid])
        out.append(InstancePrediction(ids == pid, cls, score))
    return out


def average_precision_from_matches(is_tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """ScanNet's AP (fraction 0..1) of scored detections (module docstring).

    Shapes: ``is_tp`` (K,) bool, ``scores`` (K,) float; ``num_gt`` GT instances.
    Returns NaN when ``num_gt`` is 0, 0 when there are GT instances but no detection.
    """
    if num_gt == 0:
        return float("nan")
    is_tp = np.asarray(is_tp, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if is_tp.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    is_tp, scores = is_tp[order], scores[order]
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    # the last detection of each run of equal scores closes that score's operating point
    last = np.append(scores[1:] != scores[:-1], True)
    precision = np.concatenate([[1.0], tp[last] / (tp[last] + fp[last])])
    recall = np.concatenate([[0.0], tp[last] / num_gt])
    before = np.concatenate([[0.0], recall[:-1]])
    after = np.concatenate([recall[1:], recall[-1:]])
    return float(np.sum(precision * (after - before) / 2.0))


def _gt_class_lookup(gt_instance_classes: Mapping[int, int] | np.ndarray, ids: np.ndarray) -> dict[int, int]:
    if isinstance(gt_instance_classes, Mapping):
        return {int(i): int(gt_instance_classes[int(i)]) for i in ids if int(i) in gt_instance_classes}
    table = np.asarray(gt_instance_classes)
    return {int(i): int(table[i]) for i in ids if 0 <= i < table.size}


def _class_matches(
    gt_ids: np.ndarray,
    gt_class: dict[int, int],
    evaluated: set[int],
    class_id: int,
    predictions: Sequence[InstancePrediction],
    thresholds: np.ndarray,
    min_region_size: int,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """Per threshold, (is_tp, scores) of the class's counted predictions; #GT; #predictions."""
    ids, sizes = np.unique(gt_ids, return_counts=True)
    size_of = dict(zip(ids.tolist(), sizes.tolist()))
    valid_gt = [i for i in ids.tolist() if i != 0 and gt_class.get(i) == class_id and size_of[i] >= min_region_size]
    small_gt = [i for i in ids.tolist() if i != 0 and gt_class.get(i) == class_id and size_of[i] < min_region_size]
    labelled = np.isin(gt_ids, [i for i in ids.tolist() if i != 0 and gt_class.get(i) in evaluated])
    ignored = ~labelled | np.isin(gt_ids, small_gt)
    # dense index of the valid GT instances, -1 elsewhere
    gt_index = np.full(gt_ids.shape, -1, dtype=np.int64)
    for k, i in enumerate(valid_gt):
        gt_index[gt_ids == i] = k
    gt_size = np.array([size_of[i] for i in valid_gt], dtype=np.float64)

    preds = [p for p in predictions if p.class_id == class_id and int(np.count_nonzero(p.mask)) >= min_region_size]
    preds.sort(key=lambda p: -p.score)  # stable: ties keep the input order
    n_gt = len(valid_gt)
    iou = np.zeros((len(preds), n_gt))
    ignored_share = np.zeros(len(preds))
    for k, p in enumerate(preds):
        mask = np.asarray(p.mask, dtype=bool).reshape(-1)
        if mask.shape != gt_ids.shape:
            raise ValueError(f"prediction mask has shape {mask.shape}, GT has {gt_ids.shape}")
        size = float(np.count_nonzero(mask))
        hit = gt_index[mask]
        inter = np.bincount(hit[hit >= 0], minlength=n_gt).astype(np.float64)
        iou[k] = inter / (size + gt_size - inter)
        ignored_share[k] = np.count_nonzero(ignored[mask]) / size
    scores = np.array([p.score for p in preds], dtype=np.float64)

    out = []
    for t in thresholds:
        matched = np.zeros(n_gt, dtype=bool)
        is_tp, kept = [], []
        for k in range(len(preds)):
            above = iou[k] > t
            free = above & ~matched
            if free.any():
                matched[np.flatnonzero(free)[np.argmax(iou[k][free])]] = True
                is_tp.append(True)
                kept.append(k)
            elif above.any() or ignored_share[k] <= t:
                is_tp.append(False)  # duplicate of a matched GT instance, or a plain FP
                kept.append(k)
        out.append((np.array(is_tp, dtype=bool), scores[kept]))
    return out, n_gt, len(preds)


def instance_ap(
    gt_instance_ids: np.ndarray,
    gt_instance_classes: Mapping[int, int] | np.ndarray,
    predictions: Sequence[InstancePrediction],
    class_ids: Sequence[int] | None = None,
    ap_thresholds: Sequence[float] = SCANNET_THRESHOLDS,
    min_region_size: int = MIN_REGION_SIZE,
) -> InstanceAPResult:
    """Class-aware 3D instance AP, AP@50, AP@25 (percent) on mesh vertices.

    Shapes: ``gt_instance_ids`` (V,) int, 0 = no instance; ``gt_instance_classes`` maps a
    GT instance id to its class (a dict, or an array indexed by id); each prediction's
    mask is (V,) bool. AP is computed per class (module docstring) and averaged over
    the classes that have GT instances.
    """
    gt_ids = np.asarray(gt_instance_ids).reshape(-1).astype(np.int64)
    present = np.unique(gt_ids)
    gt_class = _gt_class_lookup(gt_instance_classes, present[present != 0])
    if class_ids is None:
        class_ids = sorted(set(gt_class.values()))
    evaluated = {int(c) for c in class_ids}
    thresholds = np.array(sorted(set(map(float, ap_thresholds)) | {0.25, 0.5}))
    t25 = int(np.flatnonzero(np.isclose(thresholds, 0.25))[0])
    t50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
    t_avg = np.isin(np.round(thresholds, 6), np.round(np.asarray(ap_thresholds, dtype=float), 6))

    per_class: dict[int, ClassAP] = {}
    for c in sorted(evaluated):
        matches, n_gt, n_pred = _class_matches(gt_ids, gt_class, evaluated, c, predictions, thresholds,
                                               min_region_size)
        aps = np.array([average_precision_from_matches(tp, s, n_gt) for tp, s in matches]) * 100.0
        per_class[c] = ClassAP(
            ap=float(np.mean(aps[t_avg])) if n_gt else float("nan"),
            ap50=float(aps[t50]), ap25=float(aps[t25]), per_threshold=aps, num_gt=n_gt, num_pred=n_pred)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if not np.isnan(v)]
        return float(np.mean(finite)) if finite else float("nan")

    values = list(per_class.values())
    return InstanceAPResult(
        ap=mean([v.ap for v in values]), ap50=mean([v.ap50 for v in values]),
        ap25=mean([v.ap25 for v in values]), per_class=per_class, thresholds=thresholds)


def instance_ap_class_agnostic(
    gt_instance_ids: np.ndarray,
    predictions: Sequence[InstancePrediction],
    gt_instance_classes: Mapping[int, int] | np.ndarray | None = None,
    class_ids: Sequence[int] | None = None,
    ap_thresholds: Sequence[float] = SCANNET_THRESHOLDS,
    min_region_size: int = MIN_REGION_SIZE,
) -> InstanceAPResult:
    """Class-agnostic 3D instance AP (UnScene3D's protocol): every instance is one class.

    Shapes as :func:`instance_ap`. GT instances count when their class is in
    ``class_ids`` (e.g. ScanNet's 18 benchmark object classes); without
    ``gt_instance_classes`` / ``class_ids`` every non-zero GT id counts. Predicted
    classes are ignored. The result has one class, 1.
    """
    gt_ids = np.asarray(gt_instance_ids).reshape(-1).astype(np.int64)
    present = [int(i) for i in np.unique(gt_ids) if i != 0]
    if gt_instance_classes is None or class_ids is None:
        kept = present
    else:
        cls = _gt_class_lookup(gt_instance_classes, np.array(present, dtype=np.int64))
        wanted = {int(c) for c in class_ids}
        kept = [i for i in present if cls.get(i) in wanted]
    agnostic_gt = {i: 1 for i in kept}
    agnostic_preds = [InstancePrediction(p.mask, 1, p.score) for p in predictions]
    return instance_ap(gt_ids, agnostic_gt, agnostic_preds, class_ids=[1], ap_thresholds=ap_thresholds,
                       min_region_size=min_region_size)
