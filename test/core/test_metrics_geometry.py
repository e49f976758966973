"""Chamfer distance and F-score between meshes."""

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from clusteringsdf_core.metrics.geometry import (  # noqa: E402
    mesh_metrics,
    per_object_mesh_metrics,
    point_cloud_metrics,
)

N = 20_000


def plane(size=2.0, z=0.0):
    """A square of side ``size`` in the plane z = const, two triangles."""
    h = size / 2
    vertices = np.array([[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]])
    return trimesh.Trimesh(vertices, np.array([[0, 1, 2], [0, 2, 3]]), process=False)


def test_point_cloud_metrics_hand_computed():
    # pred {(0,0,0), (1,0,0)}, GT {(0,0,0), (0,0,0.2)}.
    # pred -> GT: 0 and 1 -> accuracy 0.5; GT -> pred: 0 and 0.2 -> completeness 0.1.
    # Within 5 cm: pred 1 of 2 (precision 50), GT 1 of 2 (recall 50) -> F 50.
    res = point_cloud_metrics(np.array([[0, 0, 0], [1, 0, 0]]), np.array([[0, 0, 0], [0, 0, 0.2]]))
    assert res.accuracy == pytest.approx(0.5)
    assert res.completeness == pytest.approx(0.1)
    assert res.chamfer == pytest.approx(0.3)
    assert (res.precision, res.recall, res.fscore) == pytest.approx((50.0, 50.0, 50.0))


def test_identical_meshes():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    res = mesh_metrics(box, box.copy(), num_points=N, seed=3)
    assert res.chamfer < 0.01  # sampling noise only (mean spacing ~ 1 cm for 20k pts on 6 m^2)
    assert res.fscore == pytest.approx(100.0)
    again = mesh_metrics(box, box.copy(), num_points=N, seed=3)
    assert again == res  # seeded


def test_mesh_shifted_by_10cm():
    # A 2 m square moved 10 cm along its normal: every nearest distance is >= 0.1
    # (just above it from the in-plane sampling offset).
    res = mesh_metrics(plane(z=0.1), plane(z=0.0), threshold_m=0.05, num_points=N, seed=0)
    assert res.fscore == pytest.approx(0.0)
    assert res.precision == 0.0 and res.recall == 0.0
    assert res.chamfer == pytest.approx(0.1, abs=0.005)
    assert res.accuracy >= 0.1 and res.completeness >= 0.1
    # at a 20 cm threshold the same pair is perfect
    assert mesh_metrics(plane(z=0.1), plane(z=0.0), threshold_m=0.2, num_points=N).fscore == pytest.approx(100.0)


def test_per_object_metrics_with_matching():
    gt = {1: plane(z=0.0), 2: trimesh.creation.box(extents=(0.5, 0.5, 0.5))}
    pred = {7: gt[2].copy(), 9: plane(z=0.1), 4: plane(z=5.0)}  # 4 is unmatched
    per_object, mean = per_object_mesh_metrics(pred, gt, {7: 2, 9: 1}, num_points=5_000)
    assert sorted(per_object) == [1, 2]
    assert per_object[2].fscore == pytest.approx(100.0)
    assert per_object[1].fscore == pytest.approx(0.0)
    assert mean.fscore == pytest.approx(50.0)
    assert mean.chamfer == pytest.approx((per_object[1].chamfer + per_object[2].chamfer) / 2)
    assert per_object_mesh_metrics(pred, gt, {}) == ({}, None)
    with pytest.raises(ValueError):
        per_object_mesh_metrics(pred, gt, {7: 1, 9: 1}, num_points=100)
