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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.metrics.consistency import (covisible_matches, depth_error, id_consistency,
                                                     merged_detections, overlapping_pairs)

__all__ = ["WithoutGtResult", "evaluate_without_gt", "write_report", "run_without_gt"]


@dataclass
class WithoutGtResult:
    """What :func:`evaluate_without_gt` measured (fractions in [0, 1], metres)."""

    views: list[int]                                   # frame indices of the held-out views
    depth_median_m: float                              # median over all valid pixels of all views
    depth_per_view_m: list[float]                      # median per view
    pairs: list[tuple[int, int, float]]                # (view i, view j, overlap), indices into views
    fused: dict                                        # consistency, compared, both_labelled
    raw: dict | None                                   # the same for the segmenter's ids (None: no labels)
    merged: dict | None = None                         # pairs, merged, share_merged (None: no classes)
    objects: dict[int, str] = field(default_factory=dict)   # fused instance id -> class name (held-out views)
    sheet: np.ndarray | None = None                    # the picture (H, W, 3) uint8

    def summary(self) -> dict:
        out = {"views": self.views, "depth_median_m": self.depth_median_m,
               "depth_per_view_m": self.depth_per_view_m, "num_pairs": len(self.pairs),
               "pairs": [list(p) for p in self.pairs], "fused": self.fused, "raw": self.raw,
               "objects": {str(k): v for k, v in sorted(self.objects.items())}, "merged": self.merged}
        if self.raw and self.raw["consistency"] > 0:
            out["fused_over_raw"] = self.fused["consistency"] / self.raw["consistency"]
        return out


def _pooled(per_pair: list) -> dict:
    """Consistency over all pairs together (pixel pairs pooled), from per-pair
    :class:`~clusteringsdf_core.metrics.consistency.IdConsistency` results."""
    used = [r for r in per_pair if r.compared]
    compared = sum(r.compared for r in used)
    if compared == 0:
        return {"consistency": float("nan"), "compared": 0, "both_labelled": float("nan")}
    return {"consistency": sum(r.consistency * r.compared for r in used) / compared, "compared": int(compared),
            "both_labelled": sum(r.both_labelled * r.compared for r in used) / compared}


def evaluate_without_gt(render: Callable[[Frame], tuple], frames: Sequence[Frame], *, scale: float = 0.5,
                        min_overlap: float = 0.3, max_pairs: int | None = 30,
                        class_name: Callable[[int], str] | None = None,
                        is_object: Callable[[int], bool] = lambda c: c > 0,
                        progress: Callable[[int], None] | None = None) -> WithoutGtResult:
    """Score a map on ``frames`` (held-out views with measured depth).

    ``render(frame) -> (semantic, instance, z-depth in metres)`` at the frame's size, for
    the frames resized to ``scale`` (e.g. :meth:`ScenePrediction.render_labels_and_depth
    <clusteringsdf_core.bench.prediction.ScenePrediction.render_labels_and_depth>`: one
    rendering per view gives labels and depth); ``class_name``: names for the picture
    and the object list; ``is_object(class id)``: the segmenter's segments that count as
    objects for :func:`~clusteringsdf_core.metrics.consistency.merged_detections` (the
    views' ``semantic`` maps; e.g. the class table's things); ``progress`` is called
    with 1 after each rendered view.
    """
    from clusteringsdf_core.viz import colorize_depth, colorize_labels, contact_sheet

    frames = [f for f in frames if f.depth_m is not None]
    if len(frames) < 2:
        raise ValueError(f"need at least two held-out views with depth, got {len(frames)}")
    width = max(8, round(frames[0].width * scale))
    height = max(8, round(frames[0].height * scale))
    depths, intrinsics, fused_ids, raw_ids, rendered_depths, rows = [], [], [], [], [], []
    detection_pairs = merged = 0
    has_classes = False
    objects: dict[int, str] = {}
    for frame in frames:
        small = frame.resized(width, height)
        semantic, instance, rendered = render(small)
        measured = np.asarray(small.depth_m, np.float32)
        depths.append(measured)
        intrinsics.append(small.intrinsics)
        fused_ids.append(instance)
        rendered_depths.append(rendered)
        raw = None if small.instance is None else np.asarray(small.instance, np.int32)
        raw_ids.append(raw)
        if raw is not None and small.semantic is not None:
            has_classes = True
            pairs_here, merged_here = merged_detections(raw, np.asarray(small.semantic, np.int64), instance,
                                                        is_object=is_object)
            detection_pairs += pairs_here
            merged += merged_here
        for i in np.unique(instance[instance > 0]):
            cls = int(np.bincount(semantic[instance == i]).argmax())
            objects[int(i)] = class_name(cls) if class_name else str(cls)
        row = [(f"view {frame.index}", np.asarray(small.rgb))]
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
        raw=_pooled(raw) if raw else None, objects=objects, sheet=contact_sheet(rows),
        merged={"pairs": detection_pairs, "merged": merged,
                "share_merged": merged / detection_pairs if detection_pairs else float("nan")}
        if has_classes else None)


def merged_line(merged: dict | None) -> str:
    """'m of n pairs (share)' of :attr:`WithoutGtResult.merged`, or why there is none."""
    if merged is None:
        return "n/a (the views have no segmenter classes)"
    if not merged["pairs"]:
        return "n/a (no view has two objects of the segmenter)"
    return f"{merged['merged']} of {merged['pairs']} pairs in one view ({merged['share_merged']:.2f})"


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
        f"segmenter's objects merged by the map: {merged_line(result.merged)}",
        f"objects in the held-out views: {len(result.objects)} ({objects})",
        f"wrote {out / 'without_gt.json'} and {out / 'without_gt.png'}"])


# --------------------------------------------------------------------------- the protocol

#: Columns of the protocol's table: (key of a run's entry, header, format).
TABLE = (("depth_median_cm", "depth error, median (cm)", "{:.1f}"),
         ("fused_consistency", "id consistency", "{:.3f}"),
         ("both_labelled", "both views name an object", "{:.2f}"),
         ("share_merged", "segmenter's objects merged", "{:.2f}"),
         ("objects_in_views", "objects in held-out views", "{:d}"),
         ("objects", "objects", "{:d}"),
         ("seconds", "seconds", "{:.0f}"))


def _entry(result: WithoutGtResult, prediction, seconds: float) -> dict:
    return {"depth_median_cm": 100.0 * result.depth_median_m, "fused_consistency": result.fused["consistency"],
            "both_labelled": result.fused["both_labelled"], "compared": result.fused["compared"],
            "objects_in_views": len(result.objects), "objects": len(prediction.instance_ids),
            "seconds": seconds, "object_classes": {str(k): v for k, v in sorted(result.objects.items())},
            "segmenter": result.raw, "merged": result.merged,
            "share_merged": result.merged["share_merged"] if result.merged else None}


def _markdown(document: dict) -> str:
    lines = ["# Recordings without GT objects", "",
             "Per held-out view pair that overlaps: the share of co-visible pixels (matched through the "
             "measured depth and poses) whose object ids agree, where either view names an object. A "
             "map that calls everything one object scores 1.0: read it with the object counts. The "
             "segmenter's per-view ids are the row `segmenter ids`.", ""]
    header = ["run", "method"] + [h for _, h, _ in TABLE]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, methods in document["runs"].items():
        segmenter = next((e["segmenter"] for e in methods.values() if e.get("segmenter")), None)
        if segmenter:
            lines.append(f"| {run} | segmenter ids (per view) | | {segmenter['consistency']:.3f} | "
                         f"{segmenter['both_labelled']:.2f} | 0.00 | | | |")
        for method, entry in methods.items():
            if "error" in entry or "skipped" in entry:
                lines.append(f"| {run} | {method} | {entry.get('error') or 'skipped: ' + entry['skipped']} |"
                             + " |" * (len(TABLE) - 1))
                continue
            cells = [fmt.format(entry[key]) if entry.get(key) is not None and not (
                isinstance(entry[key], float) and math.isnan(entry[key])) else "n/a" for key, _, fmt in TABLE]
            lines.append(f"| {run} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _run_one(method, dataset, frames: list, seed: int, cache, options: dict, score: dict) -> tuple[dict, object]:
    """One method on one recording: (the table entry, the picture or None)."""
    import time

    from clusteringsdf_core.bench.harness import method_seconds
    from clusteringsdf_core.bench.methods import missing_needs

    missing = missing_needs(method, dataset)
    if missing:
        return {"skipped": "; ".join(missing)}, None
    started = time.perf_counter()
    prediction = method.run(dataset, {"seed": int(seed), "cache": cache, **options})
    seconds = method_seconds(time.perf_counter() - started, prediction.meta)
    result = evaluate_without_gt(prediction.render_labels_and_depth, frames, class_name=dataset.classes.name_of,
                                 is_object=set(dataset.classes.thing_ids).__contains__, **score)
    return _entry(result, prediction, seconds), result.sheet


def run_without_gt(methods: Sequence, datasets: Sequence, out_dir: str | Path, *, seeds: Sequence[int] = (0,),
                   method_options: dict | None = None, scale: float = 0.5, min_overlap: float = 0.3,
                   max_pairs: int | None = 30, fail_fast: bool = False,
                   report: Callable[[str], None] = print) -> dict:
    """The ``without_gt`` protocol: every method (names or
    :class:`~clusteringsdf_core.bench.methods.Method`) on every dataset, trained on the
    dataset's own machine labels once per seed, scored by :func:`evaluate_without_gt` on
    its held-out views. Writes ``out_dir/without_gt.json`` and ``without_gt.md`` after
    each run (an interrupted benchmark keeps what it measured) and a picture per run
    (``without_gt_<scene>[_seed<s>]_<method>.png``); returns the document."""
    import datetime
    import traceback

    from tqdm import tqdm

    from clusteringsdf_core.bench.harness import _jsonable, _resolve, _versions
    from clusteringsdf_core.bench.methods import MeshCache
    from clusteringsdf_core.viz import save_png

    score = {"scale": scale, "min_overlap": min_overlap, "max_pairs": max_pairs}
    chosen = _resolve(methods)
    for dataset in datasets:      # before hours of training, not after
        views = sum(1 for f in dataset.test if f.depth_m is not None)
        if views < 2:
            raise ValueError(f"{dataset.name}: {'one held-out view' if views == 1 else 'no held-out views'} with "
                             f"depth; two or more are needed (a reader's test_every sets how many)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = MeshCache(max_entries=2)
    document = {"protocol": "without_gt", "versions": _versions(), "seeds": [int(s) for s in seeds],
                "scale": scale, "min_overlap": min_overlap, "max_pairs": max_pairs,
                "methods": [m.name for m in chosen], "runs": {}}
    bar = tqdm(total=len(datasets) * len(seeds) * len(chosen), desc="without_gt", unit="run", disable=None)
    try:
        for dataset in datasets:
            frames = list(dataset.test)
            for seed in seeds:
                run = dataset.name if len(seeds) == 1 else f"{dataset.name}/seed{seed}"
                for method in chosen:
                    bar.set_postfix_str(f"{run} {method.name}")
                    try:
                        entry, sheet = _run_one(method, dataset, frames, seed, cache,
                                                (method_options or {}).get(method.name, {}), score)
                        if sheet is not None:
                            save_png(out / f"without_gt_{run.replace('/', '_')}_{method.name}.png", sheet)
                    except Exception as exc:        # one failing method must not sink the benchmark
                        if fail_fast:
                            raise
                        entry = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
                    document["runs"].setdefault(run, {})[method.name] = entry
                    shown = entry.get("error") or entry.get("skipped") or (
                        f"id consistency {entry['fused_consistency']:.3f}, {entry['objects']} objects, "
                        f"depth {entry['depth_median_cm']:.1f} cm")
                    report(f"[without_gt] {run} | {method.name}: {shown}")
                    document["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                    (out / "without_gt.json").write_text(json.dumps(_jsonable(document), indent=1))
                    (out / "without_gt.md").write_text(_markdown(document))
                    bar.update(1)
    finally:
        bar.close()
    return document


def bench_command(args, names: list[str], options: dict) -> int:
    """``clusteringsdf bench --protocol without_gt --scene DIR ... [--labels VARIANT]``:
    :func:`run_without_gt` on recordings opened with their machine labels (one variant,
    default: the reader's), training seeds from ``--label-seed``."""
    from clusteringsdf_core.data.formats import open_dataset

    if not args.scene or args.seeds:
        raise SystemExit("clusteringsdf bench --protocol without_gt: give the recordings as --scene DIR ... "
                         "(with machine labels, e.g. from `clusteringsdf segment`), not --seeds")
    if args.labels and len(args.labels) != 1:
        raise SystemExit(f"clusteringsdf bench --protocol without_gt: --labels names the recordings' one "
                         f"machine-label variant, got {args.labels}")
    try:
        datasets = [open_dataset(p, labels=args.labels[0] if args.labels else None) for p in args.scene]
        document = run_without_gt(names, datasets, args.out, seeds=args.label_seed, method_options=options,
                                  fail_fast=args.fail_fast)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"clusteringsdf bench --protocol without_gt: {exc}") from None
    out = Path(args.out)
    print(f"  results  {out / 'without_gt.json'}\n  markdown {out / 'without_gt.md'}")
    failed = [(r, m) for r, block in document["runs"].items() for m, e in block.items() if "error" in e]
    if failed:
        print(f"clusteringsdf bench: {len(failed)} run(s) failed; see {out / 'without_gt.md'}", file=sys.stderr)
        return 1
    return 0
