"""A 2D segmenter simulator: ground-truth labels in, machine-like labels out.

ClusteringSDF trains on the output of an off-the-shelf 2D segmenter whose instance
ids are *not* consistent across views. On scenes that only have ground truth (the
synthetic scenes, Replica renders, ScanNet's ``instance-filt``) this module makes
such labels, so that the method meets the problem it is built for:

- per-view random relabelling of instance ids (always on: this is the whole problem);
- the robustness protocol of the supplementary's Table A: a share of the instances of
  each view masked out (``mask_ratio``), see :func:`table_a_presets`;
- the usual errors of a real segmenter: over-segmentation (an object cut in two),
  under-segmentation (two touching objects merged), ragged boundaries, wrong thing
  classes, tiny segments dropped, and a confidence map.

Stuff (wall, floor, ceiling) never gets an instance: its pixels are instance 0 with
their semantic class kept. A segment that is dropped (masked out by ``mask_ratio``
or smaller than ``min_area_px``) becomes *unlabelled*: instance 0, semantic 0
(void), confidence 0, so a trainer can tell "unlabelled" (void) from "background
stuff" (a stuff class).

Every frame is simulated with its own ``numpy.random.Generator`` seeded from
``(seed, frame index)``: a frame's labels do not depend on which other frames were
simulated before it, or in which order. Each corruption stage draws from its own
child stream, so switching one corruption on does not reshuffle the others' draws;
with one seed the instances masked at 10% are a subset of those masked at 30%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

import cv2
import numpy as np

from clusteringsdf_core.config import ConfigError, Section, param
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame

__all__ = [
    "SegmenterSimConfig",
    "simulate_frame",
    "simulate_dataset",
    "table_a_presets",
    "realistic_preset",
    "preset",
    "preset_names",
]

_U64 = (1 << 64) - 1
_STAGES = ("mask", "under", "over", "noise", "flip", "relabel")


@dataclass(frozen=True)
class SegmenterSimConfig(Section):
    """How ground truth is turned into machine labels. The defaults are a perfect
    segmenter whose only defect is view-local ids (Table A's "GT" column)."""

    name: ClassVar[str] = "segmenter_sim"

    mask_ratio: float = param(0.0, "share of the thing instances of each view dropped to "
                              "unlabelled (Table A protocol: 0.0/0.1/0.3/0.5/0.7); the instances "
                              "are chosen per view at random, the count is ratio x N with "
                              "stochastic rounding so the expected share is exact", min=0.0, max=1.0)
    under_segment_prob: float = param(0.0, "probability that an instance is merged with one "
                                      "touching instance (each instance is merged at most once)",
                                      min=0.0, max=1.0)
    merge_gap_px: int = param(1, "two instances touch when one, dilated by this many pixels, "
                              "overlaps the other (1 = 8-connected contact)", min=1)
    over_segment_prob: float = param(0.0, "probability that a segment is cut in two by a line "
                                     "through its centroid across its principal axis", min=0.0,
                                     max=1.0)
    over_segment_jitter_deg: float = param(30.0, "the cutting line is rotated by a uniform "
                                           "random angle within +- this many degrees", min=0.0,
                                           max=90.0)
    boundary_noise_px: int = param(0, "label boundaries move by up to this many pixels (a "
                                   "smooth random displacement field plus per-pixel jitter); "
                                   "pixels farther than this from every boundary never change",
                                   min=0)
    boundary_noise_cell_px: int = param(16, "spatial scale of the smooth part of the boundary "
                                        "displacement, pixels", min=2)
    semantic_flip_prob: float = param(0.0, "probability that a segment's thing class is replaced "
                                      "by another thing class (stuff is never flipped)", min=0.0,
                                      max=1.0)
    min_area_px: int = param(0, "segments smaller than this many pixels (after all other "
                             "corruptions) are dropped to unlabelled", min=0)
    id_mode: str = param("permutation", "per-view instance ids: a random permutation of 1..N, or "
                         "N distinct random sparse ids in 1..sparse_id_max",
                         choices=("permutation", "sparse"))
    sparse_id_max: int = param(1000, "largest id of id_mode 'sparse' (raised to N if smaller)",
                               min=1)
    confidence_inside: float = param(0.95, "confidence of labelled pixels away from boundaries",
                                     min=0.0, max=1.0)
    confidence_boundary: float = param(0.5, "confidence on a label boundary; it rises linearly "
                                       "to confidence_inside over confidence_band_px", min=0.0,
                                       max=1.0)
    confidence_band_px: float = param(3.0, "width of the low-confidence band along boundaries, "
                                      "pixels (0 = no band)", min=0.0)
    confidence_corrupted_scale: float = param(0.6, "factor on the confidence of segments that "
                                              "were split, merged or class-flipped", min=0.0,
                                              max=1.0)

    def validate(self) -> None:
        if self.confidence_boundary > self.confidence_inside:
            raise ConfigError("segmenter_sim.confidence_boundary",
                              f"must be <= confidence_inside ({self.confidence_inside})")


# --------------------------------------------------------------------------- presets

_TABLE_A_RATIOS = {"0%": 0.0, "10%": 0.1, "30%": 0.3, "50%": 0.5, "70%": 0.7}


def table_a_presets() -> dict[str, SegmenterSimConfig]:
    """The supplementary's Table A: GT labels, ids randomised per view, then 0/10/30/50/70%
    of each view's instances masked out. No other corruption."""
    return {key: SegmenterSimConfig(mask_ratio=ratio) for key, ratio in _TABLE_A_RATIOS.items()}


def realistic_preset() -> SegmenterSimConfig:
    """A Mask2Former-like segmenter, the default for synthetic scenes: some missed,
    over- and under-segmented objects, 2-pixel boundary noise, 5% wrong thing classes,
    and segments under 30 pixels dropped (sizes meant for 320x240 images)."""
    return SegmenterSimConfig(mask_ratio=0.05, under_segment_prob=0.1, over_segment_prob=0.1,
                              boundary_noise_px=2, semantic_flip_prob=0.05, min_area_px=30)


def preset_names() -> list[str]:
    return [*_TABLE_A_RATIOS, "gt", "realistic"]


def preset(name: str) -> SegmenterSimConfig:
    """A preset by name: ``"0%"``..``"70%"`` (Table A), ``"gt"`` (= ``"0%"``) or ``"realistic"``."""
    if name == "realistic":
        return realistic_preset()
    if name == "gt":
        name = "0%"
    try:
        return table_a_presets()[name]
    except KeyError:
        raise ValueError(f"unknown segmenter preset {name!r}; known: {preset_names()}") from None


# --------------------------------------------------------------------------- public API


def simulate_frame(frame_or_arrays: Frame | tuple | Mapping[str, Any], config: SegmenterSimConfig,
                   *, seed: int, index: int | None = None, classes: ClassTable = SCANNET_REDUCED,
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Machine labels of one view from its ground truth.

    ``frame_or_arrays`` is a :class:`Frame` with ``gt_instance`` (and usually
    ``gt_semantic``), a tuple ``(gt_instance, gt_semantic)`` or a mapping with those
    keys. The random stream is seeded from ``(seed, index)``; ``index`` defaults to the
    frame's index (0 for arrays).

    Returns ``(instance, semantic, confidence)``: int32 (H, W) view-local ids with
    0 = none; int32 (H, W) class ids with 0 = void (None when there is no
    ``gt_semantic``); float32 (H, W) in [0, 1].
    """
    gt_instance, gt_semantic, frame_index = _unpack(frame_or_arrays)
    if index is None:
        index = frame_index
    gt_instance = np.asarray(gt_instance)
    if gt_instance.ndim != 2:
        raise ValueError(f"gt_instance must be (H, W), got shape {gt_instance.shape}")
    has_semantic = gt_semantic is not None
    if has_semantic:
        gt_semantic = np.asarray(gt_semantic)
        if gt_semantic.shape != gt_instance.shape:
            raise ValueError(f"gt_semantic {gt_semantic.shape} and gt_instance {gt_instance.shape} "
                             "differ in shape")
        if gt_semantic.size and (gt_semantic.min() < 0 or gt_semantic.max() >= len(classes)):
            raise ValueError(f"gt_semantic holds ids outside the class table 0..{len(classes) - 1} "
                             f"(min {gt_semantic.min()}, max {gt_semantic.max()}); map the "
                             "dataset's labels into the table first")
    else:
        gt_semantic = np.zeros(gt_instance.shape, np.int32)
    rngs = _stage_rngs(seed, index)
    instance, semantic, confidence = _simulate(gt_instance.astype(np.int64),
                                               gt_semantic.astype(np.int64), config, rngs, classes)
    return instance, (semantic if has_semantic else None), confidence


def simulate_dataset(frames: Iterable[Frame], config: SegmenterSimConfig, seed: int, *,
                     classes: ClassTable = SCANNET_REDUCED) -> list[Frame]:
    """Every frame with ``instance``/``semantic``/``confidence`` made from its ground truth
    (each seeded from ``(seed, frame.index)``); the input frames are not modified."""
    out = []
    for frame in frames:
        instance, semantic, confidence = simulate_frame(frame, config, seed=seed, classes=classes)
        out.append(frame.with_labels(instance=instance, semantic=semantic, confidence=confidence))
    return out


# --------------------------------------------------------------------------- internals


def _unpack(source) -> tuple[Any, Any, int]:
    if isinstance(source, Frame):
        if source.gt_instance is None:
            raise ValueError(f"frame {source.index} has no gt_instance to simulate labels from")
        return source.gt_instance, source.gt_semantic, int(source.index)
    if isinstance(source, Mapping):
        if "gt_instance" not in source:
            raise ValueError("a mapping passed to simulate_frame needs a 'gt_instance' key")
        return source["gt_instance"], source.get("gt_semantic"), int(source.get("index", 0))
    if isinstance(source, tuple) and len(source) == 2:
        return source[0], source[1], 0
    if isinstance(source, np.ndarray):
        return source, None, 0
    raise TypeError("simulate_frame takes a Frame, (gt_instance, gt_semantic) or a mapping, "
                    f"got {type(source).__name__}")


def _stage_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    root = np.random.SeedSequence([int(seed) & _U64, int(index) & _U64])
    return {name: np.random.default_rng(child) for name, child in zip(_STAGES, root.spawn(len(_STAGES)))}


def _simulate(gt_instance: np.ndarray, gt_semantic: np.ndarray, cfg: SegmenterSimConfig,
              rngs: dict[str, np.random.Generator], classes: ClassTable):
    is_stuff = np.zeros(len(classes), bool)
    is_stuff[classes.stuff_ids] = True
    stuff_px = is_stuff[gt_semantic]
    thing_ids = np.asarray(classes.thing_ids, np.int64)

    # Thing segments: GT instances minus stuff (a stuff pixel never carries an instance).
    # Ids are compacted to 1..K (sorted by GT id) so encoded ids (class * 1000 + k) stay cheap.
    seg = np.where((gt_instance > 0) & ~stuff_px, gt_instance, 0)
    gt_ids, inverse = np.unique(seg, return_inverse=True)
    seg = inverse.reshape(seg.shape).astype(np.int64) + (0 if gt_ids[0] == 0 else 1)
    ids = np.arange(1, int(seg.max()) + 1, dtype=np.int64)
    seg_class = {int(i): _mode(gt_semantic[seg == i]) for i in ids}
    corrupted: set[int] = set()

    # Base semantics: stuff keeps its class, things get their segment's class.
    semantic = gt_semantic.copy()

    # 1. Table A masking: a random share of this view's instances becomes unlabelled.
    if cfg.mask_ratio > 0 and len(ids):
        rng = rngs["mask"]
        order = rng.permutation(ids)
        n_drop = int(np.floor(cfg.mask_ratio * len(ids) + rng.uniform()))
        dropped = order[:min(n_drop, len(ids))]
        drop_px = np.isin(seg, dropped)
        seg[drop_px] = 0
        semantic[drop_px] = 0
        for i in dropped:
            seg_class.pop(int(i))

    next_id = int(seg.max()) + 1

    # 2. Under-segmentation: merge pairs of touching instances.
    if cfg.under_segment_prob > 0 and seg_class:
        rng = rngs["under"]
        neighbours = _touching(seg, cfg.merge_gap_px)
        merged: set[int] = set()
        for i in rng.permutation(np.array(sorted(seg_class), np.int64)):
            i = int(i)
            draw = rng.uniform()
            if i in merged or draw >= cfg.under_segment_prob:
                continue
            free = [j for j in neighbours.get(i, ()) if j not in merged]
            if not free:
                continue
            j = int(free[rng.integers(len(free))])
            mask_i, mask_j = seg == i, seg == j
            keep, gone = (i, j) if mask_i.sum() >= mask_j.sum() else (j, i)
            seg[mask_i | mask_j] = keep
            seg_class.pop(gone)
            merged.update((i, j))
            corrupted.add(keep)

    # 3. Over-segmentation: cut a segment in two across its principal axis.
    if cfg.over_segment_prob > 0 and seg_class:
        rng = rngs["over"]
        for i in sorted(seg_class):
            draw = rng.uniform()
            angle = np.radians(rng.uniform(-cfg.over_segment_jitter_deg, cfg.over_segment_jitter_deg))
            if draw >= cfg.over_segment_prob:
                continue
            ys, xs = np.nonzero(seg == i)
            side = _cut_side(ys, xs, angle)
            if side is None:
                continue
            seg[ys[side], xs[side]] = next_id
            seg_class[next_id] = seg_class[i]
            corrupted.update((i, next_id))
            next_id += 1

    # Things take their segment's class before boundaries move, so both maps move together.
    if seg_class:
        lut = np.zeros(next_id, np.int64)
        for i, c in seg_class.items():
            lut[i] = c
        semantic = np.where(seg > 0, lut[seg], semantic)

    # 4. Boundary noise: resample both maps through a small random displacement.
    if cfg.boundary_noise_px > 0:
        rows, cols = _displacement(rngs["noise"], seg.shape, cfg.boundary_noise_px,
                                   cfg.boundary_noise_cell_px)
        seg = seg[rows, cols]
        semantic = semantic[rows, cols]

    # 5. Thing-class flips, per segment.
    present = np.unique(seg)
    present = [int(i) for i in present if i > 0]
    if cfg.semantic_flip_prob > 0 and len(thing_ids) > 1:
        rng = rngs["flip"]
        for i in present:
            others = thing_ids[thing_ids != seg_class[i]]
            draw, pick = rng.uniform(), rng.integers(len(others))
            if draw >= cfg.semantic_flip_prob:
                continue
            seg_class[i] = int(others[pick])
            semantic[seg == i] = seg_class[i]
            corrupted.add(i)

    # 6. Tiny segments become unlabelled.
    if cfg.min_area_px > 0 and present:
        areas = np.bincount(seg.ravel(), minlength=next_id)
        tiny = np.array([i for i in present if areas[i] < cfg.min_area_px], np.int64)
        if len(tiny):
            tiny_px = np.isin(seg, tiny)
            seg[tiny_px] = 0
            semantic[tiny_px] = 0
            present = [i for i in present if areas[i] >= cfg.min_area_px]

    # 7. View-local ids.
    instance = _relabel(seg, present, cfg, rngs["relabel"])

    confidence = _confidence(seg, semantic, [i for i in present if i in corrupted], cfg)
    return instance, semantic.astype(np.int32), confidence


def _mode(values: np.ndarray) -> int:
    values = values[values >= 0]
    return int(np.bincount(values).argmax()) if values.size else 0


def _touching(seg: np.ndarray, gap_px: int) -> dict[int, list[int]]:
    """For each instance, the instances that its mask dilated by ``gap_px`` overlaps."""
    kernel = np.ones((2 * gap_px + 1, 2 * gap_px + 1), np.uint8)
    h, w = seg.shape
    out: dict[int, list[int]] = {}
    ids = np.unique(seg)
    for i in ids[ids > 0]:
        ys, xs = np.nonzero(seg == i)
        y0, y1 = max(ys.min() - gap_px, 0), min(ys.max() + gap_px + 1, h)
        x0, x1 = max(xs.min() - gap_px, 0), min(xs.max() + gap_px + 1, w)
        window = seg[y0:y1, x0:x1]
        grown = cv2.dilate((window == i).astype(np.uint8), kernel).astype(bool)
        near = np.unique(window[grown])
        out[int(i)] = sorted(int(j) for j in near if j > 0 and j != i)
    return out


def _cut_side(ys: np.ndarray, xs: np.ndarray, angle: float) -> np.ndarray | None:
    """Pixels on one side of a line through the centroid, across the principal axis
    rotated by ``angle``; None when a side would be empty."""
    if ys.size < 2:
        return None
    pts = np.stack([xs, ys], 1).astype(np.float64)
    pts -= pts.mean(0)
    cov = pts.T @ pts / len(pts)
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]
    c, s = np.cos(angle), np.sin(angle)
    axis = np.array([c * axis[0] - s * axis[1], s * axis[0] + c * axis[1]])
    side = pts @ axis > 0
    if side.all() or not side.any():
        return None
    return side


def _displacement(rng: np.random.Generator, shape: tuple[int, int], radius: int, cell: int):
    """Row/column indices of a random resampling that moves no pixel more than
    ``radius`` in either direction: 70% smooth field, 30% per-pixel jitter."""
    h, w = shape
    gh, gw = h // cell + 2, w // cell + 2
    coarse = rng.uniform(-1.0, 1.0, size=(2, gh, gw)).astype(np.float32)
    smooth = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in coarse])
    jitter = rng.uniform(-1.0, 1.0, size=(2, h, w)).astype(np.float32)
    disp = np.clip(np.rint(radius * (0.7 * smooth + 0.3 * jitter)), -radius, radius).astype(np.int64)
    rows = np.clip(np.arange(h)[:, None] + disp[0], 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + disp[1], 0, w - 1)
    return rows, cols


def _relabel(seg: np.ndarray, present: list[int], cfg: SegmenterSimConfig,
             rng: np.random.Generator) -> np.ndarray:
    n = len(present)
    if cfg.id_mode == "sparse":
        new = rng.choice(np.arange(1, max(cfg.sparse_id_max, n) + 1), size=n, replace=False)
    else:
        new = rng.permutation(n) + 1
    lut = np.zeros(int(seg.max()) + 1, np.int64)
    if n:
        lut[np.asarray(present)] = new
    return lut[seg].astype(np.int32)


def _confidence(seg: np.ndarray, semantic: np.ndarray, corrupted: list[int],
                cfg: SegmenterSimConfig) -> np.ndarray:
    labelled = (seg > 0) | (semantic > 0)
    conf = np.full(seg.shape, cfg.confidence_inside, np.float32)
    if cfg.confidence_band_px > 0:
        key = seg * (int(semantic.max()) + 1) + semantic
        edge = np.zeros(seg.shape, bool)
        dy = key[1:, :] != key[:-1, :]
        dx = key[:, 1:] != key[:, :-1]
        edge[1:, :] |= dy
        edge[:-1, :] |= dy
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        if edge.any():
            dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
            ramp = np.clip(dist / cfg.confidence_band_px, 0.0, 1.0)
            conf = cfg.confidence_boundary + (cfg.confidence_inside - cfg.confidence_boundary) * ramp
    if corrupted:
        conf = np.where(np.isin(seg, corrupted), conf * cfg.confidence_corrupted_scale, conf)
    conf = np.where(labelled, conf, 0.0)
    return np.clip(conf, 0.0, 1.0).astype(np.float32)
