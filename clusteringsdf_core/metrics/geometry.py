"""Mesh reconstruction metrics: accuracy, completeness, Chamfer distance, F-score.

Definitions (the usual ones of MonoSDF / ObjectSDF++ evaluations): sample N points
uniformly on the surface of the predicted mesh (P) and of the GT mesh (G), with a seed;
d(x, Y) is the distance from x to its nearest neighbour in Y (``scipy.spatial.cKDTree``).

    accuracy     = mean_{p in P} d(p, G)          (metres)
    completeness = mean_{g in G} d(g, P)          (metres)
    chamfer      = (accuracy + completeness) / 2  (metres)
    precision    = 100 * share of p in P with d(p, G) < threshold
    recall       = 100 * share of g in G with d(g, P) < threshold
    fscore       = 2 * precision * recall / (precision + recall)   (0 when both are 0)

The threshold defaults to 5 cm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["GeometryResult", "sample_surface", "point_cloud_metrics", "mesh_metrics", "per_object_mesh_metrics"]

#: F-score distance threshold (metres).
FSCORE_THRESHOLD_M = 0.05
#: Points sampled on each surface.
NUM_SAMPLES = 200_000


@dataclass(frozen=True)
class GeometryResult:
    """Distances in metres, precision / recall / F-score in percent."""

    accuracy: float
    completeness: float
    chamfer: float
    precision: float
    recall: float
    fscore: float


def sample_surface(mesh, num_points: int, seed: int) -> np.ndarray:
    """``num_points`` points ``(N, 3)`` drawn uniformly by area on a ``trimesh.Trimesh``."""
    import trimesh  # imported here: the rest of the metrics do not need it

    if len(mesh.faces) == 0:
        raise ValueError("cannot sample a mesh without faces")
    points, _ = trimesh.sample.sample_surface(mesh, int(num_points), seed=np.random.default_rng(seed))
    return np.asarray(points, dtype=np.float64)


def point_cloud_metrics(
    pred_points: np.ndarray, gt_points: np.ndarray, threshold_m: float = FSCORE_THRESHOLD_M
) -> GeometryResult:
    """The module docstring's metrics between point sets ``(N, 3)`` and ``(M, 3)``."""
    pred_points = np.asarray(pred_points, dtype=np.float64).reshape(-1, 3)
    gt_points = np.asarray(gt_points, dtype=np.float64).reshape(-1, 3)
    if len(pred_points) == 0 or len(gt_points) == 0:
        raise ValueError("both point sets must be non-empty")
    dist_pred_to_gt, _ = cKDTree(gt_points).query(pred_points, k=1)
    dist_gt_to_pred, _ = cKDTree(pred_points).query(gt_points, k=1)
    accuracy = float(np.mean(dist_pred_to_gt))
    completeness = float(np.mean(dist_gt_to_pred))
    precision = 100.0 * float(np.mean(dist_pred_to_gt < threshold_m))
    recall = 100.0 * float(np.mean(dist_gt_to_pred < threshold_m))
    fscore = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return GeometryResult(accuracy, completeness, (accuracy + completeness) / 2.0, precision, recall, fscore)


def mesh_metrics(
    pred_mesh,
    gt_mesh,
    threshold_m: float = FSCORE_THRESHOLD_M,
    num_points: int = NUM_SAMPLES,
    seed: int = 0,
) -> GeometryResult:
    """Metrics between two ``trimesh.Trimesh`` surfaces, ``num_points`` samples on each.

    The predicted and GT surfaces are sampled from two independent random streams derived
    from ``seed``, so the result is reproducible and identical meshes are not sampled at
    the same points by construction.
    """
    pred_seed, gt_seed = np.random.SeedSequence(seed).spawn(2)
    pred_points = sample_surface(pred_mesh, num_points, int(pred_seed.generate_state(1)[0]))
    gt_points = sample_surface(gt_mesh, num_points, int(gt_seed.generate_state(1)[0]))
    return point_cloud_metrics(pred_points, gt_points, threshold_m)


def per_object_mesh_metrics(
    pred_meshes: Mapping[int, object],
    gt_meshes: Mapping[int, object],
    matching: Mapping[int, int],
    threshold_m: float = FSCORE_THRESHOLD_M,
    num_points: int = NUM_SAMPLES,
    seed: int = 0,
) -> tuple[dict[int, GeometryResult], GeometryResult | None]:
    """Per-object metrics for ``matching`` (predicted id -> GT id) and their mean.

    ``pred_meshes`` / ``gt_meshes`` map object ids to ``trimesh.Trimesh``. Returns
    ({GT id: result}, mean of every field over the matched objects, or None when the
    matching is empty). Unmatched objects are not scored here (count them with a
    detection metric such as :func:`instance_ap`).
    """
    results: dict[int, GeometryResult] = {}
    for pred_id, gt_id in sorted(matching.items()):
        if gt_id in results:
            raise ValueError(f"GT object {gt_id} matched twice")
        results[gt_id] = mesh_metrics(pred_meshes[pred_id], gt_meshes[gt_id], threshold_m, num_points,
                                      seed + int(gt_id))
    if not results:
        return results, None
    fields = np.array([[r.accuracy, r.completeness, r.chamfer, r.precision, r.recall, r.fscore]
                       for r in results.values()])
    mean = GeometryResult(*map(float, fields.mean(axis=0)))
    return results, mean
