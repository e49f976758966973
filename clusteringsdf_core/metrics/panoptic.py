"""Panoptic metrics on 2D label maps: PQ^scene, per-frame PQ, mIoU.

Conventions (the whole package): label maps are int32 arrays ``(H, W)``; semantic class
0 is void; instance id 0 is "no instance". ``is_thing`` is a :class:`ClassTable` or a
boolean lookup ``(num_classes,)`` indexed by class id; class ids outside it are unknown.
All scores are percentages (0..100), as in the papers.

Definitions (Kirillov et al., "Panoptic Segmentation"): a segment is a
``(class, instance)`` pair; a predicted and a GT segment match when they have the same
class and IoU > 0.5 (such a match is unique). Per class c,

    PQ_c = sum_{matches} IoU / (TP + FP/2 + FN/2),
    SQ_c = sum_{matches} IoU / TP,        RQ_c = TP / (TP + FP/2 + FN/2),

and PQ, SQ, RQ are the means over the evaluated classes. Instance ids of stuff classes
are zeroed, so a stuff class has at most one segment.

Void rules (Panoptic Lifting's evaluation, itself derived from torchmetrics): a pixel
whose GT class is not evaluated is *GT void*; a pixel whose predicted class is not
evaluated (class 0 included) is *predicted void*. Void pixels belong to no segment.
IoU removes from the union the GT-void pixels of the predicted segment and the
predicted-void pixels of the GT segment. An unmatched predicted segment more than
half GT void is not a FP; an unmatched GT segment more than half predicted void is not
a FN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clusteringsdf_core.data.classes import ClassTable

__all__ = [
    "ClassPanopticStats",
    "PanopticResult",
    "MeanIoUResult",
    "resize_labels_nearest",
    "panoptic_quality_scene",
    "panoptic_quality_frame",
    "mean_iou",
]

#: Classes covering less than this share of the pixels are dropped (Panoptic Lifting).
MIN_CLASS_FRACTION = 0.005
#: Keys spanning at most this many values are compacted with a lookup table, not a sort.
_LUT_MAX_SPAN = 1 << 24


@dataclass(frozen=True)
class ClassPanopticStats:
    """Matching counts and qualities (percent) of one class."""

    tp: int
    fp: int
    fn: int
    iou_sum: float
    pq: float
    sq: float
    rq: float


@dataclass(frozen=True)
class PanopticResult:
    """PQ / SQ / RQ in percent, the per-class values and the summed counts."""

    pq: float
    sq: float
    rq: float
    per_class: dict[int, ClassPanopticStats] = field(default_factory=dict)
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def classes(self) -> list[int]:
        """The class ids the means run over."""
        return sorted(self.per_class)


@dataclass(frozen=True)
class MeanIoUResult:
    """mIoU in percent, the IoU (percent) of each evaluated class and the confusion matrix."""

    miou: float
    per_class: dict[int, float]
    confusion: np.ndarray  # (num_classes, num_classes) int64, rows = GT, columns = prediction


# --------------------------------------------------------------------------- helpers


def _thing_lut(is_thing: ClassTable | np.ndarray | Sequence[bool]) -> np.ndarray:
    """Boolean lookup ``(num_classes,)``: True for thing classes."""
    if isinstance(is_thing, ClassTable):
        return is_thing.is_thing_lut()
    lut = np.asarray(is_thing, dtype=bool)
    if lut.ndim != 1 or lut.size < 2:
        raise ValueError(f"is_thing must be a 1-D boolean lookup over class ids, got shape {lut.shape}")
    return lut


def _dense_ids(keys: np.ndarray, always: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``keys`` (N,) sorted, each element's index among them (N,) and their counts.

    Same result as ``np.unique(keys, return_inverse=True, return_counts=True)`` where
    ``always`` (a key >= every key) is counted as present even when absent. Uses a
    bincount lookup table (linear time) when the keys span a small range.
    """
    if always is not None and (keys.size == 0 or int(keys.max()) < always):
        top = always
    else:
        top = int(keys.max()) if keys.size else -1
    if top + 1 > _LUT_MAX_SPAN:
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        if always is not None and (uniq.size == 0 or uniq[-1] != always):
            uniq, counts = np.append(uniq, always), np.append(counts, 0)
        return uniq.astype(np.int64), inverse.reshape(-1), counts
    counts = np.bincount(keys, minlength=top + 1)
    present = counts > 0
    if always is not None:
        present[always] = True
    lut = (np.cumsum(present) - 1).astype(np.int32)
    return np.flatnonzero(present), lut[keys], counts[present]


def _pair_counts(a: np.ndarray, b: np.ndarray, num_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-occurrence counts of index arrays ``a`` (N,) and ``b`` (N,) with ``0 <= b < num_b``.

    Returns the ``a`` index, ``b`` index and count of every pair that occurs.
    """
    keys = a.astype(np.int64) * num_b + b.astype(np.int64)
    if keys.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    if int(keys.max()) < _LUT_MAX_SPAN:
        counts = np.bincount(keys)
        pairs = np.flatnonzero(counts)
        counts = counts[pairs]
    else:
        pairs, counts = np.unique(keys, return_counts=True)
    return pairs // num_b, pairs % num_b, counts


def _segment_index(
    sem: np.ndarray, inst: np.ndarray, evaluated: np.ndarray, thing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment index of every pixel, the class of each segment and each segment's area.

    A segment is a (class, instance) pair of an evaluated class, with the instance id
    zeroed for stuff classes; pixels of other classes (void) get index n.
    Shapes: ``sem, inst`` (N,), ``evaluated, thing`` (C,) bool -> index (N,),
    classes (n,), areas (n + 1,) (the last one counts the void pixels).
    """
    if sem.size and (int(sem.min()) < 0 or int(inst.min()) < 0):
        raise ValueError("class and instance ids must be >= 0")
    top = max(int(sem.max()) + 1 if sem.size else 1, evaluated.size)
    eval_ext = np.zeros(top, bool)
    eval_ext[:evaluated.size] = evaluated
    thing_ext = np.zeros(top, np.int64)
    thing_ext[:thing.size] = thing
    stride = int(inst.max()) + 1 if inst.size else 1
    void_key = top * stride  # larger than any segment key: its index is n
    keys = np.where(eval_ext[sem], sem.astype(np.int64) * stride + inst * thing_ext[sem], void_key)
    uniq, index, areas = _dense_ids(keys, always=void_key)
    return index, uniq[:-1] // stride, areas


def _flat(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr).reshape(-1)


def _check_same_shape(*arrays: np.ndarray) -> None:
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"label maps must have one shape, got {sorted(shapes)}")


def _panoptic_counts(
    pred_sem: np.ndarray,
    pred_inst: np.ndarray,
    gt_sem: np.ndarray,
    gt_inst: np.ndarray,
    evaluated: np.ndarray,
    thing: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class TP, FP, FN and IoU sum of the panoptic matching (module docstring rules).

    Shapes: label arrays (N,); ``evaluated`` and ``thing`` (C,) bool lookups by class id.
    Returns four arrays (C,): tp, fp, fn (int64) and iou_sum (float64).
    """
    num_classes = evaluated.size
    p_idx, p_cls, p_area = _segment_index(pred_sem, pred_inst, evaluated, thing)
    g_idx, g_cls, g_area = _segment_index(gt_sem, gt_inst, evaluated, thing)
    n_p, n_g = p_cls.size, g_cls.size  # index n_p / n_g = void
    p_area, g_area = p_area[:n_p], g_area[:n_g]
    gi, pi, inter = _pair_counts(g_idx, p_idx, n_p + 1)
    # GT-void pixels inside each predicted segment, predicted-void pixels inside each GT segment.
    on_gt_void = gi == n_g
    p_void = np.bincount(pi[on_gt_void], weights=inter[on_gt_void], minlength=n_p + 1)[:n_p]
    on_pred_void = pi == n_p
    g_void = np.bincount(gi[on_pred_void], weights=inter[on_pred_void], minlength=n_g + 1)[:n_g]

    cand = (gi < n_g) & (pi < n_p)
    gi, pi, inter = gi[cand], pi[cand], inter[cand]
    same = g_cls[gi] == p_cls[pi]
    gi, pi, inter = gi[same], pi[same], inter[same].astype(np.float64)
    union = (p_area[pi] - p_void[pi]) + (g_area[gi] - g_void[gi]) - inter
    iou = inter / np.maximum(union, 1.0)
    match = iou > 0.5
    g_matched = np.zeros(n_g, bool)
    p_matched = np.zeros(n_p, bool)
    g_matched[gi[match]] = True
    p_matched[pi[match]] = True

    match_cls = g_cls[gi[match]]
    tp = np.bincount(match_cls, minlength=num_classes)
    iou_sum = np.bincount(match_cls, weights=iou[match], minlength=num_classes)
    fn_seg = ~g_matched & (g_void <= 0.5 * g_area)
    fp_seg = ~p_matched & (p_void <= 0.5 * p_area)
    fn = np.bincount(g_cls[fn_seg], minlength=num_classes)
    fp = np.bincount(p_cls[fp_seg], minlength=num_classes)
    return tp[:num_classes], fp[:num_classes], fn[:num_classes], iou_sum[:num_classes]


def _summarise(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_sum: np.ndarray, classes: np.ndarray
) -> PanopticResult:
    """Per-class PQ/SQ/RQ and their means over ``classes`` (percent); 0 where undefined."""
    per_class: dict[int, ClassPanopticStats] = {}
    for c in classes.tolist():
        denom = tp[c] + 0.5 * fp[c] + 0.5 * fn[c]
        pq = 100.0 * iou_sum[c] / denom if denom > 0 else 0.0
        sq = 100.0 * iou_sum[c] / tp[c] if tp[c] > 0 else 0.0
        rq = 100.0 * tp[c] / denom if denom > 0 else 0.0
        per_class[c] = ClassPanopticStats(int(tp[c]), int(fp[c]), int(fn[c]), float(iou_sum[c]),
                                          float(pq), float(sq), float(rq))
    if not per_class:
        return PanopticResult(0.0, 0.0, 0.0, {}, 0, 0, 0)
    values = list(per_class.values())
    return PanopticResult(
        pq=float(np.mean([v.pq for v in values])),
        sq=float(np.mean([v.sq for v in values])),
        rq=float(np.mean([v.rq for v in values])),
        per_class=per_class,
        tp=sum(v.tp for v in values),
        fp=sum(v.fp for v in values),
        fn=sum(v.fn for v in values),
    )


def _class_fractions(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Share (C,) of ``labels`` (N,) taken by each class id 0..C-1 (ids beyond count in N only)."""
    if labels.size == 0:
        return np.zeros(num_classes)
    return np.bincount(labels, minlength=num_classes)[:num_classes] / labels.size


# --------------------------------------------------------------------------- public API


def resize_labels_nearest(labels: np.ndarray, size: tuple[int, int] = (512, 512)) -> np.ndarray:
    """Resize a label map ``(H, W)`` to ``size = (height, width)`` by nearest neighbour.

    Output pixel (i, j) takes input pixel (floor((i + 0.5) * H / height),
    floor((j + 0.5) * W / width)): pixel centres, as PIL's ``Image.NEAREST`` resize that
    Panoptic Lifting applies before PQ^scene (all frames at 512x512). Labels are never
    blended. Returns int32 ``(height, width)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a (H, W) label map, got shape {labels.shape}")
    height, width = size
    in_h, in_w = labels.shape
    rows = np.minimum(((np.arange(height) + 0.5) * in_h / height).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * in_w / width).astype(np.int64), in_w - 1)
    return labels[rows[:, None], cols[None, :]].astype(np.int32)


def panoptic_quality_scene(
    pred_semantics: Sequence[np.ndarray] | np.ndarray,
    pred_instances: Sequence[np.ndarray] | np.ndarray,
    gt_semantics: Sequence[np.ndarray] | np.ndarray,
    gt_instances: Sequence[np.ndarray] | np.ndarray,
    is_thing: ClassTable | np.ndarray | Sequence[bool],
    min_class_fraction: float = MIN_CLASS_FRACTION,
) -> PanopticResult:
    """Scene-level panoptic quality PQ^scene / SQ / RQ^scene (Panoptic Lifting, Sec. 4).

    Inputs: F frames, each four int label maps of one shape ``(H_f, W_f)`` (a stacked
    ``(F, H, W)`` array works too). Resize them first with :func:`resize_labels_nearest`
    to follow the published protocol (512x512).

    Definition:
      1. pixels whose GT class is void (0) are dropped, in every frame;
      2. the remaining ``(class, instance)`` pairs of all frames are stacked into one
         array, so one pair is ONE segment across the whole scene: a prediction must
         keep an object's id consistent over the views to score;
      3. evaluated classes: the non-void classes of ``is_thing`` present in the GT or the
         prediction, minus those covering < ``min_class_fraction`` (0.5%) of the GT
         pixels or of the predicted pixels (the two maps are tested separately, as
         Panoptic Lifting does); other classes become void (module docstring rules);
      4. panoptic matching and PQ/SQ/RQ per class as in the module docstring; the
         results are means over the evaluated classes (a class with no TP, FP or FN
         scores 0).

    Deviation from Panoptic Lifting's script: there predicted class 0 is scored as a
    stuff class of its own; here it is predicted void, like any unevaluated class.
    """
    thing = _thing_lut(is_thing)
    n = len(gt_semantics)
    if not (len(pred_semantics) == len(pred_instances) == len(gt_instances) == n):
        raise ValueError("pred/gt semantics and instances need one frame count")
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for ps, pi, gs, gi in zip(pred_semantics, pred_instances, gt_semantics, gt_instances):
        _check_same_shape(ps, pi, gs, gi)
        keep = _flat(gs) != 0
        for bucket, arr in zip(parts, (ps, pi, gs, gi)):
            bucket.append(_flat(arr)[keep])
    if n == 0:
        return PanopticResult(0.0, 0.0, 0.0, {}, 0, 0, 0)
    pred_sem, pred_inst, gt_sem, gt_inst = (np.concatenate(p) for p in parts)

    num_classes = thing.size
    gt_frac = _class_fractions(gt_sem, num_classes)
    pred_frac = _class_fractions(pred_sem, num_classes)
    present = (gt_frac > 0) | (pred_frac > 0)
    too_small = ((gt_frac > 0) & (gt_frac < min_class_fraction)) | (
        (pred_frac > 0) & (pred_frac < min_class_fraction))
    evaluated = present & ~too_small
    evaluated[0] = False
    tp, fp, fn, iou_sum = _panoptic_counts(pred_sem, pred_inst, gt_sem, gt_inst, evaluated, thing)
    return _summarise(tp, fp, fn, iou_sum, np.flatnonzero(evaluated))


def panoptic_quality_frame(
    pred_semantics: np.ndarray,
    pred_instances: np.ndarray,
    gt_semantics: np.ndarray,
    gt_instances: np.ndarray,
    is_thing: ClassTable | np.ndarray | Sequence[bool],
) -> PanopticResult:
    """Standard (COCO-style) panoptic quality of one image.

    Inputs: four int label maps ``(H, W)``. Every non-void class of ``is_thing`` is
    evaluated; GT class 0 (or an unknown id) is GT void and predicted class 0 (or an
    unknown id) is predicted void, with the void rules of the module docstring; nothing
    is dropped for being small. PQ, SQ, RQ are means over the classes with
    TP + FP + FN > 0 (the convention of panopticapi and torchmetrics'
    ``PanopticQuality(things, stuffs, allow_unknown_preds_category=True)``).
    """
    _check_same_shape(pred_semantics, pred_instances, gt_semantics, gt_instances)
    thing = _thing_lut(is_thing)
    evaluated = np.ones(thing.size, bool)
    evaluated[0] = False
    tp, fp, fn, iou_sum = _panoptic_counts(
        _flat(pred_semantics).astype(np.int64), _flat(pred_instances).astype(np.int64),
        _flat(gt_semantics).astype(np.int64), _flat(gt_instances).astype(np.int64), evaluated, thing)
    seen = np.flatnonzero(evaluated & ((tp + fp + fn) > 0))
    return _summarise(tp, fp, fn, iou_sum, seen)


def mean_iou(
    pred_semantics: Sequence[np.ndarray] | np.ndarray,
    gt_semantics: Sequence[np.ndarray] | np.ndarray,
    num_classes: int,
    min_class_fraction: float = MIN_CLASS_FRACTION,
) -> MeanIoUResult:
    """Semantic mIoU over a set of frames (Panoptic Lifting's protocol).

    Inputs: F frames of int label maps ``(H_f, W_f)`` (or stacked ``(F, H, W)``); class
    ids are ``0..num_classes-1`` with 0 = void.

    Definition: one confusion matrix M (rows GT, columns prediction) over all non-void
    GT pixels; IoU_c = M[c,c] / (sum_j M[c,j] + sum_i M[i,c] - M[c,c]). mIoU is the mean
    IoU over the classes c >= 1 that occur (in GT or prediction), skipping a class
    covering < ``min_class_fraction`` (0.5%) of the pixels in both the GT and the
    prediction (Panoptic Lifting's "non-robust" rule). A prediction of void (0) on a
    class-c pixel is a miss for c; class 0 itself is not averaged (Panoptic Lifting's
    script would score it as a class when it is predicted). Predicted ids outside
    ``0..num_classes-1`` count as void.
    """
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    if len(pred_semantics) != len(gt_semantics):
        raise ValueError("pred and gt need one frame count")
    for ps, gs in zip(pred_semantics, gt_semantics):
        _check_same_shape(ps, gs)
        gt = _flat(gs).astype(np.int64)
        pred = _flat(ps).astype(np.int64)
        keep = (gt > 0) & (gt < num_classes)
        gt, pred = gt[keep], pred[keep]
        pred = np.where((pred >= 0) & (pred < num_classes), pred, 0)
        confusion += np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes
                                 ).reshape(num_classes, num_classes)
    total = confusion.sum()
    gt_count = confusion.sum(axis=1)
    pred_count = confusion.sum(axis=0)
    inter = np.diag(confusion)
    union = gt_count + pred_count - inter
    per_class: dict[int, float] = {}
    for c in range(1, num_classes):
        if union[c] == 0:
            continue
        if total > 0 and gt_count[c] < min_class_fraction * total and pred_count[c] < min_class_fraction * total:
            continue
        per_class[c] = 100.0 * float(inter[c]) / float(union[c])
    miou = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return MeanIoUResult(miou=miou, per_class=per_class, confusion=confusion)
