"""Scoring one prediction: every metric of a :class:`ScenePrediction` on a scene's
held-out test views (2D) and on the GT scene mesh (3D, when the prediction has a mesh).
The conventions are those of :mod:`clusteringsdf_core.bench.harness` (its docstring) and
``docs/METHOD.md`` (Metrics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.bench.scenes import GTScene, load_gt_scene
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Frame

__all__ = ["evaluate_prediction", "solid_metrics", "CURVE_METRICS", "SOLID_METRICS"]

#: Metrics kept per point of a time-to-quality curve (``--eval-at``; 2D only).
CURVE_METRICS = ("pq_scene", "pq_scene_things", "rq_scene", "miou")

#: Metrics of predictions with per-object solids (:func:`solid_metrics`).
SOLID_METRICS = ("object_watertight", "objects_matched", "volume_within_20",
                 "volume_ratio_median", "volume_ratios")

#: A predicted object matches a GT object when their vertex sets on the GT mesh have
#: an IoU above this (at most one match per GT object).
SOLID_MATCH_IOU = 0.5
#: Voxel size of the GT volume estimate (bench.scenes.enclosed_volume).
GT_VOLUME_PITCH_M = 0.02


def _nan_to_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _cached(cache: dict | None, key: tuple, keep: object, compute):
    """``compute()``, reused from ``cache`` under ``key``; ``keep`` (the object whose id is
    in the key) is stored beside the value so that the id stays unique."""
    if cache is not None and key in cache:
        return cache[key][1]
    value = compute()
    if cache is not None:
        cache[key] = (keep, value)
    return value


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
                "num_gt_instances", *SOLID_METRICS):
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
    geometry = _cached(geometry_cache, (id(prediction.mesh), id(gt_scene), int(geometry_points)),
                       prediction.mesh,
                       lambda: mesh_metrics(prediction.mesh, gt_scene.mesh, num_points=geometry_points))
    result.update({
        "ap25_agnostic": _nan_to_none(agnostic.ap25), "ap50_agnostic": _nan_to_none(agnostic.ap50),
        "ap_agnostic": _nan_to_none(agnostic.ap), "ap25": _nan_to_none(aware.ap25),
        "ap50": _nan_to_none(aware.ap50), "ap": _nan_to_none(aware.ap),
        "accuracy_m": geometry.accuracy, "completeness_m": geometry.completeness,
        "chamfer_m": geometry.chamfer, "precision": geometry.precision,
        "recall": geometry.recall, "fscore": geometry.fscore,
        "num_gt_instances": int(len([i for i in np.unique(gt_scene.vertex_instance) if i != 0])),
    })
    if prediction.instance_solid:
        from clusteringsdf_core.bench.scenes import gt_object_volumes

        volumes = _cached(geometry_cache, ("gt_volumes", id(gt_scene)), gt_scene,
                          lambda: gt_object_volumes(dataset, GT_VOLUME_PITCH_M))
        things = {i for i, c in gt_scene.instance_class.items() if classes[c].is_thing}
        result.update(solid_metrics(prediction, vertex_instance, gt_scene.vertex_instance,
                                    {i: v for i, v in volumes.items() if i in things}))
    return result


def solid_metrics(prediction: ScenePrediction, vertex_instance: np.ndarray,
                  gt_vertex_instance: np.ndarray, gt_volumes: dict[int, float]) -> dict[str, Any]:
    """How good the predicted object solids are (``prediction.instance_solid``).

    ``object_watertight``: percent of predicted objects whose mesh is watertight.
    Each GT object of ``gt_volumes`` (id -> m^3) is matched to the predicted object whose
    vertices on the GT mesh (``vertex_instance``, transferred labels) overlap its own
    (``gt_vertex_instance``) with IoU > SOLID_MATCH_IOU; for the matched ones,
    ``volume_ratios`` (predicted / GT volume, sorted), their median and
    ``volume_within_20`` (percent within 20% of the GT volume)."""
    solids = prediction.instance_solid
    out: dict[str, Any] = {
        "object_watertight": 100.0 * float(np.mean([w for _, w in solids.values()])) if solids else None,
        "objects_matched": 0, "volume_within_20": None, "volume_ratio_median": None,
        "volume_ratios": []}
    pred = np.where(np.isin(vertex_instance, list(solids)), vertex_instance, 0).astype(np.int64)
    gt = np.asarray(gt_vertex_instance, np.int64)
    pred_size = {int(i): int(n) for i, n in zip(*np.unique(pred, return_counts=True))}
    ratios = []
    for g, volume in gt_volumes.items():
        mine = gt == g
        if volume <= 0 or not mine.any():
            continue
        ids, inter = np.unique(pred[mine], return_counts=True)
        best = max(((n / (mine.sum() + pred_size[int(j)] - n), int(j)) for j, n in zip(ids, inter)
                    if j != 0), default=(0.0, 0))
        if best[0] > SOLID_MATCH_IOU:
            ratios.append(solids[best[1]][0] / volume)
    if ratios:
        ratios = sorted(float(r) for r in ratios)
        out.update(objects_matched=len(ratios), volume_ratios=[round(r, 4) for r in ratios],
                   volume_ratio_median=float(np.median(ratios)),
                   volume_within_20=100.0 * float(np.mean([abs(r - 1.0) <= 0.2 for r in ratios])))
    return out
