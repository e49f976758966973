"""What a benchmark writes for people: ``results.md`` (tables of means, per-run
PQ^scene, time to quality, paper values for orientation) and ``figure.png`` (test views
with each method's instance map beside the GT and the input labels)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np

from clusteringsdf_core.bench.evaluate import CURVE_METRICS
from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Frame

__all__ = ["render_markdown", "FigureCollector", "TABLE_COLUMNS"]

#: Columns of the per-variant markdown tables: (results key, header, decimals).
TABLE_COLUMNS = (
    ("pq_scene", "PQ^scene", 1), ("sq_scene", "SQ", 1), ("rq_scene", "RQ", 1),
    ("miou", "mIoU", 1), ("ea", "EA", 1), ("ap25_agnostic", "AP25", 1),
    ("ap50_agnostic", "AP50", 1), ("ap_agnostic", "AP (agn.)", 1), ("fscore", "F-score", 1),
    ("object_watertight", "closed %", 1), ("volume_within_20", "vol ±20%", 1),
    ("seconds", "seconds", 1),
)

#: Paper values shown under our tables for orientation (Replica; not comparable to
#: synthetic scenes, only the trends are).
PAPER_TABLE_A = {"0%": 65.2, "10%": 64.8, "30%": 64.9, "50%": 63.7, "70%": 55.7}
PAPER_TABLE_2 = (  # row, PQ^scene, RQ^scene, EA
    ("ObjectSDF++ with GT", 64.2, 88.3, 28.9),
    ("ObjectSDF++ + L_clustering with GT", 69.1, 95.4, 58.9),
    ("ObjectSDF++ with Mask2Former labels", 43.8, 55.3, 12.9),
    ("ours w/o L_onehot", 56.3, 61.3, 23.2),
    ("ours w/o L_reg", 52.6, 57.8, 15.7),
    ("ours w/o L_fg-bg", 57.7, 65.8, 21.3),
    ("ours (full)", 59.2, 69.1, 24.8),
)


def _nearest_view(frame: Frame, candidates: Sequence[Frame]) -> int | None:
    """Index of the candidate camera closest to ``frame``'s: centre distance (m) plus
    (1 - cosine) between the optical axes."""
    if not len(candidates):
        return None
    T = np.asarray(frame.T_world_cam)
    best, best_cost = None, math.inf
    for k, other in enumerate(candidates):
        S = np.asarray(other.T_world_cam)
        cost = float(np.linalg.norm(S[:3, 3] - T[:3, 3]) + (1.0 - S[:3, 2] @ T[:3, 2]))
        if cost < best_cost:
            best, best_cost = k, cost
    return best


class FigureCollector:
    """Rows of figure.png: test views x (RGB | GT | input labels | each method)."""

    def __init__(self, labelled: SceneDataset, scene_name: str, variant: str, max_views: int):
        from clusteringsdf_core.bench.methods import geometry_source

        n = len(labelled.test)
        picks = sorted(set(np.linspace(0, n - 1, min(max_views, n)).round().astype(int).tolist()))
        self.frames = [labelled.test[i] for i in picks]
        self.scene_name, self.variant = scene_name, variant
        self.inputs: list[tuple[str, np.ndarray] | None] = []
        train_geometry = geometry_source(labelled)
        for frame in self.frames:
            k = _nearest_view(frame, train_geometry)
            source = labelled.train[k] if k is not None else None
            if source is not None and source.instance is not None:
                self.inputs.append((f"input ids (train #{source.index})", source.instance))
            else:
                self.inputs.append(None)
        self.methods: list[tuple[str, list[np.ndarray | None]]] = []

    def add(self, name: str, prediction: ScenePrediction | None) -> None:
        maps = []
        for frame in self.frames:
            if prediction is None:
                maps.append(None)
                continue
            try:
                maps.append(prediction.render_labels(frame)[1])
            except Exception:       # figure only: a render failure leaves a blank panel
                maps.append(None)
        self.methods.append((name, maps))

    def has_panels(self) -> bool:
        return bool(self.frames)

    def sheet(self) -> np.ndarray:
        from clusteringsdf_core.viz import colorize_labels, contact_sheet

        import cv2

        rows = []
        for r, frame in enumerate(self.frames):
            blank = np.zeros_like(frame.rgb)
            # every panel takes the first one's size: small frames are enlarged so titles fit
            scale = max(1, int(np.ceil(240 / frame.width)))
            rgb = cv2.resize(frame.rgb, (frame.width * scale, frame.height * scale),
                             interpolation=cv2.INTER_NEAREST)
            row = [(f"{self.scene_name} test #{frame.index} ({self.variant})", rgb),
                   ("GT instance", colorize_labels(frame.gt_instance))]
            if self.inputs[r] is not None:
                title, labels = self.inputs[r]
                row.append((title, colorize_labels(labels)))
            for name, maps in self.methods:
                labels = maps[r]
                row.append((name if labels is not None else f"{name} (failed)",
                            colorize_labels(labels) if labels is not None else blank))
            rows.append(row)
        return contact_sheet(rows)


# --------------------------------------------------------------------------- markdown


def _cell(value, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def render_markdown(document: Mapping[str, Any]) -> str:
    """results.md of a results document: per protocol, one table per label variant
    (rows = methods, means over scenes) and, for several variants, a Table-A-style
    table of PQ^scene (rows = methods, columns = variants)."""
    lines = ["# ClusteringSDF benchmark", ""]
    versions = document.get("versions", {})
    lines.append(f"clusteringsdf_core {versions.get('clusteringsdf_core', '?')}"
                 + (f", commit {versions['git_commit']}" if "git_commit" in versions else "")
                 + f", updated {document.get('updated', '?')}. Scores in percent (EA, PQ, "
                 "AP, F-score@5cm), seconds per scene (method run, shared work included).")
    lines.append("")
    for name, proto in document.get("protocols", {}).items():
        scenes = proto.get("scenes", {})
        lines += [f"## Protocol `{name}`", "", proto.get("description", ""), "",
                  f"Scenes ({len(scenes)}): " + ", ".join(
                      f"{s} ({i.get('num_train')} train / {i.get('num_test')} test views, "
                      f"{i.get('image_size', ['?', '?'])[0]}x{i.get('image_size', ['?', '?'])[1]})"
                      for s, i in scenes.items())
                  + f"; label seed(s) {', '.join(str(s) for s in _label_seeds(proto))}. Values "
                  "are means over scenes x label seeds.", ""]
        if proto.get("complete") is False:
            lines += [f"**Partial**: {proto.get('runs_done')} of {proto.get('runs_total')} runs done "
                      "(the benchmark is running or was interrupted).", ""]
        variants = proto.get("variants", {})
        for variant, block in variants.items():
            lines += [f"### Labels: `{variant}`", ""]
            header = "| method | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
            lines += [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
            for method, entry in block.get("methods", {}).items():
                lines.append(f"| {method} | " + _row_cells(entry) + " |")
            lines.append("")
        lines += _per_run_lines(variants)
        if len(variants) > 1:
            lines += [f"### PQ^scene per label variant ({name})", ""]
            lines += ["| method | " + " | ".join(variants) + " |",
                      "|" + "---|" * (len(variants) + 1)]
            methods = list(next(iter(variants.values())).get("methods", {}))
            for method in methods:
                cells = [_cell(variants[v]["methods"].get(method, {}).get("mean", {}).get("pq_scene"), 1)
                         for v in variants]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            if name == "table_a":
                lines.append("| ClusteringSDF (paper, Replica) | "
                             + " | ".join(_cell(PAPER_TABLE_A.get(v), 1) for v in variants) + " |")
            lines.append("")
        if name == "table_2":
            lines += ["Paper Table 2 (Replica, instance; PQ^scene / RQ^scene / EA), for reference:", "",
                      "| paper row | PQ^scene | RQ | EA |", "|---|---|---|---|"]
            lines += [f"| {r} | {pq:.1f} | {rq:.1f} | {ea:.1f} |" for r, pq, rq, ea in PAPER_TABLE_2]
            lines.append("")
        lines += _curve_lines(variants)
        problems = [(v, m, s, e) for v, block in variants.items()
                    for m, me in block.get("methods", {}).items()
                    for s, e in me.get("scenes", {}).items() if "error" in e or "skipped" in e]
        if problems:
            lines += ["Not scored:", ""]
            lines += [f"- {m} on {s} ({v}): {e.get('error') or 'skipped: ' + e.get('skipped', '')}"
                      for v, m, s, e in problems]
            lines.append("")
    return "\n".join(lines)


def _label_seeds(proto: Mapping[str, Any]) -> list:
    """The label seeds of a protocol entry (documents before several seeds: ``label_seed``)."""
    return list(proto.get("label_seeds") or [proto.get("label_seed")])


def _per_run_lines(variants: Mapping[str, Any]) -> list[str]:
    """PQ^scene of every run (scene x label seed) and their mean +- standard deviation,
    when a method has more than one run in a label variant."""
    rows = []
    for variant, block in variants.items():
        for method, method_entry in block.get("methods", {}).items():
            runs = method_entry.get("scenes", {})
            if len(runs) < 2:
                continue
            mean = method_entry.get("mean", {})
            cells = ", ".join(f"{run} {_cell(e.get('pq_scene'), 1)}" for run, e in runs.items())
            rows.append(f"| {method} | {variant} | {cells} | {_cell(mean.get('pq_scene'), 1)} "
                        f"+- {_cell(mean.get('pq_scene_std'), 1)} |")
    if not rows:
        return []
    return ["### PQ^scene per run", "",
            "| method | labels | runs | mean +- std |", "|---|---|---|---|", *rows, ""]


def _curve_lines(variants: Mapping[str, Any]) -> list[str]:
    """A time-to-quality table for the runs that recorded a curve (``--eval-at``): its
    points (2D metrics at half resolution) and the final, fully scored model."""
    rows = []
    for variant, block in variants.items():
        for method, method_entry in block.get("methods", {}).items():
            for scene, entry in method_entry.get("scenes", {}).items():
                meta = entry.get("prediction", {}).get("meta", {})
                curve = meta.get("curve") or []
                if not curve:
                    continue
                final = {"iteration": meta.get("iterations"), "train_s": meta.get("train_s"),
                         **{k: entry.get(k) for k in CURVE_METRICS}}
                for point in [*curve, final]:
                    rows.append(f"| {method} | {scene} | {variant} | {point.get('iteration')} | "
                                f"{_cell(point.get('train_s'), 0)} | {_cell(point.get('pq_scene'), 1)} | "
                                f"{_cell(point.get('pq_scene_things'), 1)} | {_cell(point.get('miou'), 1)} |")
    if not rows:
        return []
    return ["### Time to quality", "",
            "Training seconds (scoring excluded) and held-out 2D scores during training; the "
            "last row of each run is the final model.", "",
            "| method | scene | labels | iteration | train s | PQ^scene | things | mIoU |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def _row_cells(method_entry: Mapping[str, Any]) -> str:
    mean = method_entry.get("mean", {})
    if not mean.get("num_scenes"):
        return " | ".join("n/a" for _ in TABLE_COLUMNS)
    return " | ".join(_cell(mean.get(key), decimals) for key, _, decimals in TABLE_COLUMNS)
