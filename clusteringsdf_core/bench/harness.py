"""The benchmark: run registered methods on scenes with simulated machine labels, score them.

The pieces, each usable alone:

- :mod:`.protocols`: the protocols (:data:`~.protocols.PROTOCOLS`) and
  :func:`~.protocols.with_labels`, a copy of a scene whose frames carry machine
  labels simulated from their ground truth, made lazily when a frame is read and
  deterministic per frame (seeded by (seed, frame index));
- :mod:`.scenes`: scenes opened or generated (:func:`~.scenes.synthetic_scenes`, cached
  under a folder, for ``--seeds``) and the GT scene mesh;
- :mod:`.evaluate`: :func:`~.evaluate.evaluate_prediction`, every metric of one
  :class:`ScenePrediction` on the scene's held-out test views (2D) and on the GT scene
  mesh (3D, when the prediction has a mesh);
- :mod:`.report`: ``results.md`` and ``figure.png``;
- this module: :func:`run_protocol`, methods x label variants x scenes, written to
  ``out_dir`` as ``results.json`` (everything), ``results.md`` (tables) and
  ``figure.png`` (test views with each method's instance map).

Metric conventions (docs/METHOD.md, Metrics):

- PQ^scene / SQ / RQ^scene and mIoU: all test frames resized to 512x512 (nearest),
  classes of ``dataset.classes``; ``pq_frame_mean`` is the mean per-frame PQ at the
  same size;
- EA: edge accuracy of the predicted instance map against ``gt_instance``, at the
  test frames' own resolution (GT instance 0, i.e. stuff and unlabelled, not scored);
- 3D AP (class-agnostic: UnScene3D's protocol over the GT thing objects; class-aware:
  ScanNet's) on the vertices of the GT scene mesh, densified so that no edge is longer
  than ``gt_max_edge_m`` (synthetic GT meshes are low-poly: a box has 8 vertices, below
  the 100-vertex minimum region of the ScanNet AP); predicted labels reach GT vertices
  within ``transfer_distance_m`` (:meth:`ScenePrediction.to_vertex_labels_on`);
- geometry: accuracy / completeness / Chamfer (metres) and precision / recall /
  F-score@5 cm of the predicted mesh against the whole GT scene mesh (objects and
  stuff, ceiling included);
- seconds: wall time of the method's ``run``, plus the time of shared work it reused
  from another method (``prediction.meta["reused_s"]``, e.g. a TSDF mesh), so each
  method is timed as if it ran alone, minus the time it spent scoring its own
  time-to-quality curve (``meta["self_eval_s"]``, neural methods with ``eval_at``);
  ``wall_s`` is the bare wall time.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from clusteringsdf_core.bench.evaluate import evaluate_prediction
from clusteringsdf_core.bench.methods import MeshCache, Method, get_method, missing_needs
from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.bench.protocols import PROTOCOLS, own_labels, with_labels
from clusteringsdf_core.bench.report import TABLE_COLUMNS, FigureCollector, render_markdown
from clusteringsdf_core.bench.scenes import load_gt_scene, scene_info
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.segmenter_sim import preset

__all__ = ["run_protocol", "RESULTS_FORMAT"]

RESULTS_FORMAT = "clusteringsdf-bench/1"


def _versions() -> dict:
    import importlib.metadata as md

    from clusteringsdf_core import __version__

    out = {"clusteringsdf_core": __version__, "python": platform.python_version(),
           "platform": platform.platform()}
    for package in ("numpy", "scipy", "trimesh", "scikit-learn", "opencv-python-headless",
                    "opencv-python", "embreex", "torch"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    try:
        repo = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def _resolve(methods: Sequence[str | Method]) -> list[Method]:
    out = [m if isinstance(m, Method) else get_method(str(m)) for m in methods]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice: {names}")
    if not out:
        raise ValueError("no methods to run")
    return out


def _unique_names(datasets: Sequence[SceneDataset]) -> list[str]:
    names, seen = [], {}
    for d in datasets:
        seen[d.name] = seen.get(d.name, 0) + 1
        names.append(d.name if seen[d.name] == 1 else f"{d.name}_{seen[d.name]}")
    return names


def _summary_line(protocol: str, scene: str, variant: str, method: str, entry: dict) -> str:
    if "error" in entry:
        return f"[{protocol}] {scene} | {variant} | {method}: FAILED ({entry['error']})"
    if "skipped" in entry:
        return f"[{protocol}] {scene} | {variant} | {method}: skipped ({entry['skipped']})"

    def f(key: str) -> str:
        v = entry.get(key)
        return "n/a" if v is None else f"{v:.1f}"

    return (f"[{protocol}] {scene} | {variant} | {method}: PQ^scene {f('pq_scene')} "
            f"SQ {f('sq_scene')} RQ {f('rq_scene')} mIoU {f('miou')} EA {f('ea')} "
            f"AP25/50 {f('ap25_agnostic')}/{f('ap50_agnostic')} F {f('fscore')} "
            f"| {entry['seconds']:.1f} s")


def run_protocol(protocol: str, methods: Sequence[str | Method], datasets: Sequence[SceneDataset],
                 out_dir: str | Path, *, seed: int | Sequence[int] = 0,
                 method_options: Mapping[str, Mapping[str, Any]] | None = None,
                 figure_views: int = 3, fail_fast: bool = False, geometry_points: int = 200_000,
                 report: Callable[[str], None] | None = None,
                 label_variants: Sequence[str] | None = None) -> dict:
    """Run ``methods`` (names or :class:`Method`) on every label variant of ``protocol``
    for every dataset (with GT), score them with :func:`evaluate_prediction`, and write
    ``results.json``, ``results.md`` and ``figure.png`` into ``out_dir``.

    ``seed`` seeds the label simulation (and, for neural methods, training); several
    seeds run every scene once per seed: the entries are then named ``<scene>/labels<seed>``
    and the means (with the standard deviation of PQ^scene) are over scenes x seeds, the
    spread a single run hides. ``method_options`` maps a method name to extra
    options (``config``, ``time_budget_s``, ``device``, ...) merged into what it receives.
    A method that raises is recorded with its error (and the run goes on) unless
    ``fail_fast``. ``geometry_points``: surface samples per mesh of the geometry metrics;
    ``report`` prints the one-line summary of each result (default: above the bar).
    ``label_variants`` runs a subset of the protocol's label variants (e.g. ``["0%",
    "70%"]`` of ``table_a``; ValueError for one the protocol does not have). An
    existing ``results.json`` in ``out_dir`` keeps its other protocols; this protocol's
    entry is replaced. Returns the whole results document (plus ``outputs``: paths).
    """
    from tqdm import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {list(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    if spec.own_labels:
        if not label_variants:
            raise ValueError(f"protocol {protocol!r} runs on the scenes' own machine labels: name their "
                             "variant(s) in label_variants (--labels)")
        spec = dataclasses.replace(spec, variants=tuple(label_variants))
    elif label_variants:
        unknown = [v for v in label_variants if v not in spec.variants]
        if unknown:
            raise ValueError(f"protocol {protocol!r} has no label variant(s) {unknown}; it has "
                             f"{list(spec.variants)}")
        spec = dataclasses.replace(spec, variants=tuple(v for v in spec.variants if v in label_variants))
    chosen = _resolve(methods)
    seeds = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"label seeds must be distinct and at least one, got {seeds}")
    datasets = list(datasets)
    if not datasets:
        raise ValueError("no scenes to run on")
    if spec.own_labels:      # a scene without the variant fails now, not after hours of training
        for dataset, variant in itertools.product(datasets, spec.variants):
            own_labels(dataset, variant)
    scene_names = _unique_names(datasets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method_options = dict(method_options or {})
    cache = MeshCache(max_entries=2)
    total = len(datasets) * len(seeds) * len(spec.variants) * len(chosen)
    bar = tqdm(total=total, desc=protocol, unit="run", disable=None, dynamic_ncols=True)
    say = report or _say
    started = time.perf_counter()

    variants_out: dict[str, dict] = {
        v: {"label_config": {"scene_variant": v} if spec.own_labels else dataclasses.asdict(preset(v)), "methods": {
            m.name: {"description": m.description, "needs": list(m.needs), "scenes": {}}
            for m in chosen}} for v in spec.variants}
    figure = None

    def write(done: int) -> tuple[dict, dict[str, Path]]:
        """results.json / results.md as they stand (after each run, so an interrupted
        benchmark keeps what it measured; ``complete`` false until the last run)."""
        for variant in variants_out.values():
            for method_entry in variant["methods"].values():
                method_entry["mean"] = _mean_over_scenes(method_entry["scenes"])
        document = _load_existing(out_dir / "results.json")
        document.update({"format": RESULTS_FORMAT,
                         "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                             timespec="seconds"),
                         "versions": _versions(), "command": sys.argv})
        document.setdefault("protocols", {})[protocol] = {
            "description": spec.description, "label_seeds": seeds,
            "scenes": {n: scene_info(d) for n, d in zip(scene_names, datasets)},
            "methods": [m.name for m in chosen], "variants": variants_out,
            "runs_done": int(done), "runs_total": int(total), "complete": done == total,
            "total_s": time.perf_counter() - started,
            "evaluation": {"pq_resize": [512, 512], "gt_max_edge_m": 0.05,
                           "transfer_distance_m": 0.05, "fscore_threshold_m": 0.05,
                           "geometry_points": int(geometry_points)},
        }
        document = _jsonable(document)
        paths = {"results": out_dir / "results.json", "markdown": out_dir / "results.md"}
        paths["results"].write_text(json.dumps(document, indent=1))
        paths["markdown"].write_text(render_markdown(document))
        return document, paths

    done = 0
    try:
        for scene_index, (dataset, scene_name) in enumerate(zip(datasets, scene_names)):
            try:
                gt_scene = load_gt_scene(dataset)
            except ValueError:
                gt_scene = None
            evaluation = {"gt_scene": gt_scene, "compute_3d": gt_scene is not None,
                          "geometry_points": geometry_points, "geometry_cache": {}}
            for (seed_index, label_seed), (variant_index, variant) in itertools.product(
                    enumerate(seeds), enumerate(spec.variants)):
                run_name = scene_name if len(seeds) == 1 else f"{scene_name}/labels{label_seed}"
                labelled = own_labels(dataset, variant) if spec.own_labels else with_labels(dataset, variant,
                                                                                              label_seed)
                want_figure = scene_index == seed_index == variant_index == 0 and figure_views > 0
                if want_figure:
                    figure = FigureCollector(labelled, scene_name, variant, figure_views)
                for method in chosen:
                    bar.set_postfix_str(f"{run_name} {variant} {method.name}")
                    entry, prediction = _run_one(method, labelled, evaluation, cache, label_seed,
                                                 method_options.get(method.name, {}), bar,
                                                 fail_fast)
                    variants_out[variant]["methods"][method.name]["scenes"][run_name] = entry
                    if want_figure:
                        figure.add(method.name, prediction)
                    say(_summary_line(protocol, run_name, variant, method.name, entry))
                    done += 1
                    bar.update(1)
                    if done < total:
                        write(done)
    finally:
        bar.close()

    document, paths = write(done)
    if figure is not None and figure.has_panels():
        from clusteringsdf_core.viz import save_png

        paths["figure"] = save_png(out_dir / "figure.png", figure.sheet())
    document["outputs"] = {k: str(v) for k, v in paths.items()}
    return document


def _say(line: str) -> None:
    """A result line above the progress bar, flushed at once (benchmarks run for long
    under nohup / CI, where stdout is block-buffered)."""
    from tqdm import tqdm

    tqdm.write(line)
    sys.stdout.flush()


def _load_existing(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if document.get("format") == RESULTS_FORMAT else {}


def _extra_seconds(meta: Mapping[str, Any]) -> tuple[float, float]:
    """(shared work reused from another method, time spent scoring itself) of a prediction."""
    return float(meta.get("reused_s", 0.0) or 0.0), float(meta.get("self_eval_s", 0.0) or 0.0)


def method_seconds(wall_s: float, meta: Mapping[str, Any]) -> float:
    """A method's run time as the benchmark reports it: its wall time, plus the shared
    work it reused (``meta["reused_s"]``), less the time it spent scoring itself
    (``meta["self_eval_s"]``: a time-to-quality curve is not its run time)."""
    reused, self_eval = _extra_seconds(meta)
    return wall_s + reused - self_eval


def _run_one(method: Method, labelled: SceneDataset, evaluation: dict, cache: MeshCache,
             seed: int, extra: Mapping[str, Any], bar, fail_fast: bool
             ) -> tuple[dict, ScenePrediction | None]:
    missing = missing_needs(method, labelled)
    if missing:
        return {"skipped": "; ".join(missing)}, None

    def progress(fraction: float, message: str) -> None:
        bar.set_postfix_str(f"{method.name}: {message} {100.0 * fraction:.0f}%")

    options = {"seed": int(seed), "progress": progress, "cache": cache, **dict(extra)}
    try:
        t0 = time.perf_counter()
        prediction = method.run(labelled, options)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = evaluate_prediction(labelled, prediction, **evaluation)
        eval_s = time.perf_counter() - t1
    except Exception as exc:            # one failing method must not sink the benchmark
        if fail_fast:
            raise
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8)}, None
    reused, self_eval = _extra_seconds(prediction.meta)
    entry = {**metrics, "seconds": method_seconds(wall, prediction.meta), "wall_s": wall, "reused_s": reused,
             "eval_s": eval_s + self_eval,
             "prediction": {"has_mesh": prediction.mesh is not None,
                            "mesh_vertices": None if prediction.mesh is None
                            else int(len(prediction.mesh.vertices)),
                            "meta": {k: v for k, v in prediction.meta.items()
                                     if k not in ("config",)},
                            "config": prediction.meta.get("config")}}
    return entry, prediction


def _mean_over_scenes(scenes: Mapping[str, dict]) -> dict:
    """Mean of every numeric metric over the scenes that produced it (None when none did)."""
    keys = [k for k, _, _ in TABLE_COLUMNS] + ["pq_scene_things", "pq_scene_stuff",
                                               "pq_frame_mean", "ap25", "ap50", "ap",
                                               "chamfer_m", "wall_s"]
    out = {"num_scenes": sum(1 for e in scenes.values() if "error" not in e and "skipped" not in e)}
    for key in keys:
        values = [e[key] for e in scenes.values() if isinstance(e.get(key), (int, float))]
        out[key] = float(np.mean(values)) if values else None
        if key == "pq_scene":
            out["pq_scene_std"] = float(np.std(values)) if len(values) > 1 else None
    return out
