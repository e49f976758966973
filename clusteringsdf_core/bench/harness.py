"""The benchmark: run registered methods on scenes with simulated machine labels, score them.

Pieces, each usable alone:

- :func:`with_labels`: a copy of a scene whose frames carry machine labels simulated
  from their ground truth (:mod:`clusteringsdf_core.data.segmenter_sim`), made lazily
  when a frame is read and deterministic per frame (seeded by (seed, frame index));
- :func:`evaluate_prediction`: every metric of one :class:`ScenePrediction` on the
  scene's held-out test views (2D) and on the GT scene mesh (3D, when the prediction
  has a mesh);
- :func:`run_protocol`: methods x label variants x scenes, written to ``out_dir`` as
  ``results.json`` (everything), ``results.md`` (tables) and ``figure.png`` (test views
  with each method's instance map);
- :func:`synthetic_scenes`: generated scenes cached under a folder, for ``--seeds``.

Protocols (:data:`PROTOCOLS`): ``baselines`` and ``table_2`` run every method on the
"realistic" simulated segmenter (``table_2`` is named for the paper's ablation table:
the ablated trainers are registered as methods of their own); ``table_a`` follows the
supplementary's Table A: GT instance labels with ids randomised per view and 0 / 10 /
30 / 50 / 70% of each view's instances masked out.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from clusteringsdf_core.bench.methods import MeshCache, Method, get_method, missing_needs
from clusteringsdf_core.bench.prediction import ScenePrediction, face_majority, gt_scene_labels
from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.data.segmenter_sim import (SegmenterSimConfig, preset, simulate_frame,
                                                   table_a_presets)

__all__ = ["Protocol", "PROTOCOLS", "GTScene", "SimulatedLabelFrames", "with_labels",
           "load_gt_scene", "evaluate_prediction", "run_protocol", "synthetic_scenes",
           "open_scenes", "render_markdown", "RESULTS_FORMAT", "TABLE_COLUMNS", "CURVE_METRICS"]

RESULTS_FORMAT = "clusteringsdf-bench/1"

#: Metrics kept per point of a time-to-quality curve (``--eval-at``; 2D only).
CURVE_METRICS = ("pq_scene", "pq_scene_things", "rq_scene", "miou")

#: Columns of the per-variant markdown tables: (results key, header, decimals).
TABLE_COLUMNS = (
    ("pq_scene", "PQ^scene", 1), ("sq_scene", "SQ", 1), ("rq_scene", "RQ", 1),
    ("miou", "mIoU", 1), ("ea", "EA", 1), ("ap25_agnostic", "AP25", 1),
    ("ap50_agnostic", "AP50", 1), ("ap_agnostic", "AP (agn.)", 1), ("fscore", "F-score", 1),
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


@dataclass(frozen=True)
class Protocol:
    """A benchmark protocol: which simulated label variants every method runs on."""

    name: str
    description: str
    variants: tuple[str, ...]          # segmenter_sim preset names


PROTOCOLS: dict[str, Protocol] = {
    "baselines": Protocol("baselines", "every method on realistic simulated machine labels "
                          "(Mask2Former-like: view-local ids, missed / split / merged "
                          "objects, boundary noise, class flips)", ("realistic",)),
    "table_a": Protocol("table_a", "supplementary Table A (robustness): GT instance labels "
                        "with ids randomised per view and a share of each view's instances "
                        "masked out (unlabelled)", tuple(table_a_presets())),
    "table_2": Protocol("table_2", "paper Table 2 (ablations): every method, the ablated "
                        "trainers being methods of their own, on realistic simulated labels",
                        ("realistic",)),
}


# --------------------------------------------------------------------------- labels


class SimulatedLabelFrames(Sequence):
    """Frames of ``base`` with ``instance`` / ``semantic`` / ``confidence`` simulated
    from their ground truth when read (each frame seeded by (seed, frame.index), so a
    frame's labels do not depend on access order). ``base`` stays reachable, so the
    geometry can be recognised as the same (:func:`methods.geometry_source`)."""

    def __init__(self, base: Sequence[Frame], config: SegmenterSimConfig, seed: int,
                 classes: ClassTable):
        self.base = base
        self.config = config
        self.seed = int(seed)
        self.classes = classes

    @property
    def stamps(self):
        return getattr(self.base, "stamps", None)

    def __len__(self) -> int:
        return len(self.base)

    def _label(self, frame: Frame) -> Frame:
        instance, semantic, confidence = simulate_frame(frame, self.config, seed=self.seed,
                                                        classes=self.classes)
        return frame.with_labels(instance=instance, semantic=semantic, confidence=confidence)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._label(self.base[i])

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.base:
            yield self._label(frame)


def _label_config(preset_name_or_config: str | SegmenterSimConfig) -> tuple[str, SegmenterSimConfig]:
    if isinstance(preset_name_or_config, SegmenterSimConfig):
        return "custom", preset_name_or_config
    return str(preset_name_or_config), preset(str(preset_name_or_config))


def with_labels(dataset: SceneDataset, preset_name_or_config: str | SegmenterSimConfig,
                seed: int = 0) -> SceneDataset:
    """A copy of ``dataset`` whose train and test frames carry machine labels simulated
    from their GT by the segmenter preset (``"realistic"``, ``"gt"``, ``"0%"``..``"70%"``)
    or config given; lazily, deterministic per frame. The original is not modified.
    Raises ValueError when the frames have no GT instances."""
    name, config = _label_config(preset_name_or_config)
    probe = dataset.train[0] if len(dataset.train) else None
    if probe is None or probe.gt_instance is None:
        raise ValueError(f"scene {dataset.name!r}: simulating machine labels needs GT instance "
                         "maps (gt_instance) in the frames")
    meta = {**dataset.meta, "labels": {"simulated": name, "seed": int(seed),
                                       "config": dataclasses.asdict(config)}}
    return dataclasses.replace(
        dataset, train=SimulatedLabelFrames(dataset.train, config, seed, dataset.classes),
        test=SimulatedLabelFrames(dataset.test, config, seed, dataset.classes),
        label_variant=f"sim:{name}", meta=meta)


# --------------------------------------------------------------------------- GT scene


@dataclass
class GTScene:
    """The GT scene mesh prepared for 3D evaluation (module docstring)."""

    mesh: object                       # trimesh.Trimesh, densified
    vertex_instance: np.ndarray        # (V,) int32, 0 = stuff / none
    vertex_semantic: np.ndarray        # (V,) int32
    instance_class: dict[int, int]     # GT object id -> class id
    max_edge_m: float


def load_gt_scene(dataset: SceneDataset, max_edge_m: float = 0.05) -> GTScene:
    """The GT scene mesh of ``dataset`` (``gt_scene_labels``) with its faces subdivided
    until no edge is longer than ``max_edge_m`` (0 = as stored); labels follow the
    faces. Raises ValueError when the dataset has no GT meshes."""
    import trimesh

    mesh, vertex_instance, vertex_semantic = gt_scene_labels(dataset)
    if max_edge_m > 0 and len(mesh.faces):
        faces = np.asarray(mesh.faces)
        face_instance = face_majority(faces, vertex_instance)
        face_semantic = face_majority(faces, vertex_semantic)
        try:
            vertices, new_faces, index = trimesh.remesh.subdivide_to_size(
                mesh.vertices, faces, max_edge=max_edge_m, max_iter=16, return_index=True)
        except ValueError:      # did not converge (degenerate faces): keep the stored mesh
            vertices = None
        if vertices is not None:
            new_faces = np.asarray(new_faces, dtype=np.int64)
            vertex_instance = np.zeros(len(vertices), np.int32)
            vertex_semantic = np.zeros(len(vertices), np.int32)
            for k in range(3):
                vertex_instance[new_faces[:, k]] = face_instance[index]
                vertex_semantic[new_faces[:, k]] = face_semantic[index]
            mesh = trimesh.Trimesh(vertices, new_faces, process=False)
    return GTScene(mesh, vertex_instance.astype(np.int32), vertex_semantic.astype(np.int32),
                   {int(o.id): int(o.class_id) for o in dataset.objects}, float(max_edge_m))


# --------------------------------------------------------------------------- evaluation


def _nan_to_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _fit(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from clusteringsdf_core.metrics import resize_labels_nearest

    labels = np.asarray(labels, dtype=np.int32)
    return labels if labels.shape == tuple(shape) else resize_labels_nearest(labels, tuple(shape))


def evaluate_prediction(dataset: SceneDataset, prediction: ScenePrediction, *,
                        frames: Sequence[Frame] | None = None,
                        resize: tuple[int, int] | None = (512, 512), compute_3d: bool = True,
                        gt_scene: GTScene | None = None, transfer_distance_m: float = 0.05,
                        geometry_points: int = 200_000,
                        geometry_cache: dict | None = None) -> dict[str, Any]:
    """Every metric of ``prediction`` on ``dataset`` (module docstring), as a flat dict
    of floats (percent; distances in metres) and counts. 3D keys are None when the
    prediction has no mesh, ``compute_3d`` is False or the scene has no GT meshes.

    ``frames`` defaults to the test (held-out) frames; each needs ``gt_semantic`` and
    ``gt_instance``. ``resize`` (height, width) is the PQ^scene / mIoU resolution
    (None = native). ``gt_scene`` reuses a :func:`load_gt_scene` result;
    ``geometry_cache`` (a dict kept by the caller for one GT scene) reuses the geometry
    metrics of a predicted mesh object already scored (methods sharing one TSDF mesh).
    """
    from clusteringsdf_core.metrics import (edge_accuracy, instance_ap, instance_ap_class_agnostic,
                                            mean_iou, mesh_metrics, panoptic_quality_frame,
                                            panoptic_quality_scene, predictions_from_instance_ids)

    frames = list(dataset.test if frames is None else frames)
    if not frames:
        raise ValueError(f"scene {dataset.name!r} has no test frames to evaluate on")
    classes = dataset.classes
    pred_sem, pred_inst, gt_sem, gt_inst = [], [], [], []
    ea_pred, ea_gt = [], []
    frame_pq = []
    for frame in frames:
        if frame.gt_semantic is None or frame.gt_instance is None:
            raise ValueError(f"scene {dataset.name!r}: test frame {frame.index} has no GT "
                             "semantic / instance maps")
        shape = frame.gt_instance.shape
        semantic, instance = prediction.render_labels(frame)
        semantic, instance = _fit(semantic, shape), _fit(instance, shape)
        ea_pred.append(instance)
        ea_gt.append(frame.gt_instance)
        size = tuple(resize) if resize is not None else shape
        maps = [_fit(a, size) for a in (semantic, instance, frame.gt_semantic, frame.gt_instance)]
        for out, a in zip((pred_sem, pred_inst, gt_sem, gt_inst), maps):
            out.append(a)
        frame_pq.append(panoptic_quality_frame(*maps, classes).pq)

    pq = panoptic_quality_scene(pred_sem, pred_inst, gt_sem, gt_inst, classes)
    miou = mean_iou(pred_sem, gt_sem, len(classes))
    ea = edge_accuracy(ea_pred, ea_gt)
    result: dict[str, Any] = {
        "pq_scene": pq.pq, "sq_scene": pq.sq, "rq_scene": pq.rq,
        "pq_scene_tp": pq.tp, "pq_scene_fp": pq.fp, "pq_scene_fn": pq.fn,
        "pq_scene_classes": len(pq.per_class),
        "pq_scene_per_class": {classes.name_of(c): s.pq for c, s in pq.per_class.items()},
        # things alone: stuff and single-instance classes make PQ^scene forgiving of a
        # prediction whose thing pixels carry no instance (one (class, 0) segment)
        "pq_scene_things": _mean_or_none([s.pq for c, s in pq.per_class.items()
                                          if classes[c].is_thing]),
        "pq_scene_stuff": _mean_or_none([s.pq for c, s in pq.per_class.items()
                                         if not classes[c].is_thing]),
        "miou": miou.miou, "ea": ea.ea, "ea_labels": ea.num_labels,
        "pq_frame_mean": float(np.mean(frame_pq)),
        "num_test_frames": len(frames), "eval_size": list(size),
        "num_pred_instances": len(prediction.instance_ids) if (
            prediction.vertex_instance is not None or prediction.instance_class) else None,
    }
    for key in ("ap25_agnostic", "ap50_agnostic", "ap_agnostic", "ap25", "ap50", "ap",
                "accuracy_m", "completeness_m", "chamfer_m", "precision", "recall", "fscore",
                "num_gt_instances"):
        result[key] = None
    if not compute_3d or prediction.mesh is None or len(prediction.mesh.vertices) == 0:
        return result
    if gt_scene is None:
        try:
            gt_scene = load_gt_scene(dataset)
        except ValueError:      # no GT meshes: 2D metrics only
            return result
    gt_vertices = np.asarray(gt_scene.mesh.vertices)
    vertex_instance, _ = prediction.to_vertex_labels_on(gt_vertices, transfer_distance_m)
    ids = [int(i) for i in np.unique(vertex_instance) if i != 0]
    detections = predictions_from_instance_ids(
        vertex_instance, {i: prediction.instance_class.get(i, 0) for i in ids},
        {i: prediction.instance_score.get(i, 1.0) for i in ids})
    agnostic = instance_ap_class_agnostic(gt_scene.vertex_instance, detections,
                                          gt_instance_classes=gt_scene.instance_class,
                                          class_ids=classes.thing_ids)
    aware = instance_ap(gt_scene.vertex_instance, gt_scene.instance_class, detections)
    key = (id(prediction.mesh), id(gt_scene), int(geometry_points))
    if geometry_cache is not None and key in geometry_cache:
        geometry = geometry_cache[key][1]
    else:
        geometry = mesh_metrics(prediction.mesh, gt_scene.mesh, num_points=geometry_points)
        if geometry_cache is not None:   # the mesh is kept so that its id stays unique
            geometry_cache[key] = (prediction.mesh, geometry)
    result.update({
        "ap25_agnostic": _nan_to_none(agnostic.ap25), "ap50_agnostic": _nan_to_none(agnostic.ap50),
        "ap_agnostic": _nan_to_none(agnostic.ap), "ap25": _nan_to_none(aware.ap25),
        "ap50": _nan_to_none(aware.ap50), "ap": _nan_to_none(aware.ap),
        "accuracy_m": geometry.accuracy, "completeness_m": geometry.completeness,
        "chamfer_m": geometry.chamfer, "precision": geometry.precision,
        "recall": geometry.recall, "fscore": geometry.fscore,
        "num_gt_instances": int(len([i for i in np.unique(gt_scene.vertex_instance) if i != 0])),
    })
    return result


# --------------------------------------------------------------------------- scenes


def _check_gt(dataset: SceneDataset, where: str) -> SceneDataset:
    frames = dataset.test if len(dataset.test) else dataset.train
    if not len(frames):
        raise ValueError(f"{where}: the scene has no frames")
    frame = frames[0]
    if frame.gt_instance is None or frame.gt_semantic is None:
        raise ValueError(f"{where}: the benchmark needs GT instance and semantic maps "
                         "(gt_instance / gt_semantic); this scene has none")
    if not len(dataset.test):
        raise ValueError(f"{where}: the scene has no held-out test frames")
    return dataset


def open_scenes(paths: Sequence[str | Path], **reader_options) -> list[SceneDataset]:
    """Open scenes in any format ``open_dataset`` reads (GT maps required)."""
    from clusteringsdf_core.data.readers import open_dataset

    return [_check_gt(open_dataset(p, labels=None, **reader_options), str(p)) for p in paths]


def synthetic_scenes(seeds: Sequence[int], root: str | Path, *,
                     report: Callable[[str], None] = print, **config_fields) -> list[SceneDataset]:
    """Synthetic scenes of ``SyntheticSceneConfig(seed=s, **config_fields)``, generated
    into ``root/seed_<s>/`` (``root/seed_<s>_<layout>/`` for a layout other than the
    default; with realistic simulated labels as variant ``sim``, like ``clusteringsdf
    scene``) or reused when a scene of the same config is already there."""
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.dataset import load_scene
    from clusteringsdf_core.data.synthetic import (LAYOUTS, SyntheticSceneConfig, generate_scene,
                                                   stored_config_matches, write_synthetic_scene)

    datasets = []
    for seed in seeds:
        config = SyntheticSceneConfig(seed=int(seed), **config_fields)
        layout = "" if config.layout == LAYOUTS[0] else f"_{config.layout}"
        folder = Path(root) / f"seed_{int(seed)}{layout}"
        meta_path = folder / "scene.json"
        stored = None
        if meta_path.exists():
            try:
                stored = json.loads(meta_path.read_text()).get("meta", {}).get("config")
            except (OSError, ValueError):
                stored = None
        if not stored_config_matches(stored, config):
            if stored is not None:
                report(f"{folder}: stored scene has another configuration; regenerating")
            t0 = time.perf_counter()
            scene = generate_scene(config)
            sim = segmenter_sim.realistic_preset()
            labelled = (segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=int(seed)),
                        segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=int(seed)))
            write_synthetic_scene(scene, folder, label_variant="sim", labelled_frames=labelled)
            report(f"generated scene seed {seed} ({scene.furniture_source} furniture, "
                   f"{len(scene.objects)} objects) into {folder} in {time.perf_counter() - t0:.1f} s")
        else:
            report(f"reusing scene seed {seed} in {folder}")
        datasets.append(_check_gt(load_scene(folder, labels=None), str(folder)))
    return datasets


def _scene_info(dataset: SceneDataset) -> dict:
    frame = dataset.test[0] if len(dataset.test) else dataset.train[0]
    info = {
        "name": dataset.name, "root": None if dataset.root is None else str(dataset.root),
        "format": dataset.meta.get("source_format", dataset.meta.get("generator", "")),
        "num_train": len(dataset.train), "num_test": len(dataset.test),
        "image_size": [frame.width, frame.height], "num_objects": len(dataset.objects),
        "num_classes": len(dataset.classes),
        "bounds": None if dataset.bounds is None else np.asarray(dataset.bounds).tolist(),
    }
    for key in ("config", "furniture", "room_size_m"):
        if key in dataset.meta:
            info[key] = dataset.meta[key]
    return info


# --------------------------------------------------------------------------- run


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
    if label_variants:
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
        v: {"label_config": dataclasses.asdict(preset(v)), "methods": {
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
            "scenes": {n: _scene_info(d) for n, d in zip(scene_names, datasets)},
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
                labelled = with_labels(dataset, variant, label_seed)
                want_figure = scene_index == seed_index == variant_index == 0 and figure_views > 0
                if want_figure:
                    figure = _FigureCollector(labelled, scene_name, variant, figure_views)
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
    reused = float(prediction.meta.get("reused_s", 0.0) or 0.0)
    # Time a method spent scoring itself (a time-to-quality curve) is not its run time.
    self_eval = float(prediction.meta.get("self_eval_s", 0.0) or 0.0)
    entry = {**metrics, "seconds": wall + reused - self_eval, "wall_s": wall, "reused_s": reused,
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


class _FigureCollector:
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
