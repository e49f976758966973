"""A trained map scored on a recording without ground-truth objects (a real RGB-D sequence).

On the held-out views of the dataset, with the measured depth and poses as the only
reference (:mod:`clusteringsdf_core.metrics.consistency`):

- **depth error**: the model's rendered depth against the measured depth;
- **cross-view id consistency** of the model's fused instance ids over the pairs of
  held-out views that overlap, beside the same measure for the 2D segmenter's raw
  per-view ids of those views (the machine labels the model trained on, when the
  dataset has them): fused ids should agree across views, raw ids agree only by chance;
- **a picture**: per held-out view the image, the segmenter's ids, the fused ids and
  the rendered depth, and the objects' classes in the report.

Views are rendered at ``scale`` of their size (the measured depth and the raw ids
resized by nearest neighbour to match), which keeps a CPU run short.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.metrics.consistency import (covisible_matches, depth_error, id_consistency,
                                                     overlapping_pairs)

__all__ = ["WithoutGtResult", "evaluate_without_gt", "write_report"]


@dataclass
class WithoutGtResult:
    """What :func:`evaluate_without_gt` measured (fractions in [0, 1], metres)."""

    views: list[int]                                   # frame indices of the held-out views
    depth_median_m: float                              # median over all valid pixels of all views
    depth_per_view_m: list[float]                      # median per view
    pairs: list[tuple[int, int, float]]                # (view i, view j, overlap), indices into views
    fused: dict                                        # consistency, compared, both_labelled
    raw: dict | None                                   # the same for the segmenter's ids (None: no labels)
    objects: dict[int, str] = field(default_factory=dict)   # fused instance id -> class name (held-out views)
    sheet: np.ndarray | None = None                    # the picture (H, W, 3) uint8

    def summary(self) -> dict:
        out = {"views": self.views, "depth_median_m": self.depth_median_m,
               "depth_per_view_m": self.depth_per_view_m, "num_pairs": len(self.pairs),
               "pairs": [list(p) for p in self.pairs], "fused": self.fused, "raw": self.raw,
               "objects": {str(k): v for k, v in sorted(self.objects.items())}}
        if self.raw and self.raw["consistency"] > 0:
            out["fused_over_raw"] = self.fused["consistency"] / self.raw["consistency"]
        return out


def _resize_nearest(array: np.ndarray, width: int, height: int) -> np.ndarray:
    if array.shape[1] == width and array.shape[0] == height:
        return array
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST)


def _pooled(per_pair: list) -> dict:
    """Consistency over all pairs together (pixel pairs pooled), from per-pair
    :class:`~clusteringsdf_core.metrics.consistency.IdConsistency` results."""
    used = [r for r in per_pair if r.compared]
    compared = sum(r.compared for r in used)
    if compared == 0:
        return {"consistency": float("nan"), "compared": 0, "both_labelled": float("nan")}
    return {"consistency": sum(r.consistency * r.compared for r in used) / compared, "compared": int(compared),
            "both_labelled": sum(r.both_labelled * r.compared for r in used) / compared}


def evaluate_without_gt(renderer, frames: Sequence[Frame], *, scale: float = 0.5, min_overlap: float = 0.3,
                        max_pairs: int | None = 30, class_name: Callable[[int], str] | None = None,
                        progress: Callable[[int], None] | None = None) -> WithoutGtResult:
    """Score a map on ``frames`` (held-out views with measured depth).

    ``renderer``: a :class:`~clusteringsdf_core.evaluation.NeuralLabelRenderer` (its
    ``resolution`` is set here from ``scale``; one rendering per view gives the labels
    and the depth); ``class_name``: names for the picture
    and the object list; ``progress`` is called with 1 after each rendered view.
    """
    from clusteringsdf_core.viz import colorize_depth, colorize_labels, contact_sheet

    frames = [f for f in frames if f.depth_m is not None]
    if len(frames) < 2:
        raise ValueError(f"need at least two held-out views with depth, got {len(frames)}")
    width = max(8, round(frames[0].width * scale))
    height = max(8, round(frames[0].height * scale))
    renderer.resolution = (width, height)
    depths, intrinsics, fused_ids, raw_ids, rendered_depths, rows = [], [], [], [], [], []
    objects: dict[int, str] = {}
    for frame in frames:
        semantic, instance, rendered = renderer.labels_and_depth(frame)
        measured = _resize_nearest(np.asarray(frame.depth_m, np.float32), width, height)
        depths.append(measured)
        intrinsics.append(frame.intrinsics.scaled(width, height))
        fused_ids.append(instance)
        rendered_depths.append(rendered)
        raw = None if frame.instance is None else _resize_nearest(np.asarray(frame.instance, np.int32), width, height)
        raw_ids.append(raw)
        for i in np.unique(instance[instance > 0]):
            cls = int(np.bincount(semantic[instance == i]).argmax())
            objects[int(i)] = class_name(cls) if class_name else str(cls)
        rgb = _resize_nearest(np.asarray(frame.rgb), width, height)
        row = [(f"view {frame.index}", rgb)]
        if raw is not None:
            row.append(("segmenter ids", colorize_labels(raw)))
        row += [("fused ids", colorize_labels(instance)), ("rendered depth", colorize_depth(rendered))]
        rows.append(row)
        if progress is not None:
            progress(1)
    poses = [f.T_world_cam for f in frames]
    pairs = overlapping_pairs(depths, intrinsics, poses, min_overlap=min_overlap, max_pairs=max_pairs)
    fused, raw = [], []
    for i, j, _ in pairs:
        m = covisible_matches(depths[i], intrinsics[i], poses[i], depths[j], intrinsics[j], poses[j])
        fused.append(id_consistency(fused_ids[i], fused_ids[j], m))
        if raw_ids[i] is not None and raw_ids[j] is not None:
            raw.append(id_consistency(raw_ids[i], raw_ids[j], m))
    per_view = [depth_error(r, d) for r, d in zip(rendered_depths, depths)]
    overall = depth_error(np.concatenate([r.ravel() for r in rendered_depths]),
                          np.concatenate([d.ravel() for d in depths]))
    return WithoutGtResult(
        views=[f.index for f in frames], depth_median_m=overall.median_m,
        depth_per_view_m=[e.median_m for e in per_view], pairs=pairs, fused=_pooled(fused),
        raw=_pooled(raw) if raw else None, objects=objects, sheet=contact_sheet(rows))


def write_report(result: WithoutGtResult, out_dir: str | Path, meta: dict) -> str:
    """``without_gt.json`` (``meta`` + :meth:`WithoutGtResult.summary`) and
    ``without_gt.png`` (the picture) into ``out_dir``; returns the lines to print."""
    from clusteringsdf_core.viz import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "without_gt.json").write_text(json.dumps({**meta, **result.summary()}, indent=2))
    save_png(out / "without_gt.png", result.sheet)

    def share(d: dict | None) -> str:
        if d is None or math.isnan(d["consistency"]):
            return "n/a"
        return (f"{d['consistency']:.3f} over {d['compared']} pixel pairs "
                f"(both labelled {d['both_labelled']:.2f})")

    objects = ", ".join(f"{k}: {v}" for k, v in sorted(result.objects.items()))
    return "\n".join([
        f"{len(result.views)} held-out views, {len(result.pairs)} overlapping pairs",
        f"depth error, median: {result.depth_median_m * 100:.1f} cm",
        f"id consistency, fused ids: {share(result.fused)}",
        f"id consistency, segmenter ids: {share(result.raw)}",
        f"objects in the held-out views: {len(result.objects)} ({objects})",
        f"wrote {out / 'without_gt.json'} and {out / 'without_gt.png'}"])
