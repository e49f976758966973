"""The no-network baselines on a clean toy scene (floor + three boxes).

Machine instance ids are permuted per view, so naive fusion (which takes them as
consistent) must do worse than with consistent ids; the geometric baselines ignore
the ids and must separate the boxes.
"""

import numpy as np
import pytest

from _bench_toy_scene import BOXES, build_toy_scene
from clusteringsdf_core.bench.baselines import (FelzenszwalbConfig, HDBSCANConfig, NaiveFusionConfig,
                                                felzenszwalb_mesh, felzenszwalb_segments,
                                                hdbscan_points, naive_fusion, observe_vertices)
from clusteringsdf_core.recon import TSDFConfig, reconstruct_mesh

TSDF = TSDFConfig(voxel_size_m=0.04)


@pytest.fixture(scope="module")
def scene():
    return build_toy_scene(n_views=10)


@pytest.fixture(scope="module")
def consistent_scene():
    return build_toy_scene(n_views=10, consistent_ids=True)


@pytest.fixture(scope="module")
def mesh(scene):
    return reconstruct_mesh(scene.train, TSDF, bounds=scene.bounds)


@pytest.fixture(scope="module")
def vertex_gt(mesh):
    """GT object id of each TSDF vertex (0 = floor) by box proximity."""
    v = np.asarray(mesh.vertices)
    out = np.zeros(len(v), dtype=np.int64)
    for oid, _, ext, (x, y) in BOXES:
        lo = np.array([x - ext[0] / 2, y - ext[1] / 2, 0.03]) - 0.05
        hi = np.array([x + ext[0] / 2, y + ext[1] / 2, ext[2]]) + 0.05
        out[np.all((v >= lo) & (v <= hi), axis=1)] = oid
    return out


def _assert_boxes_separated(pred, vertex_gt, scene, min_share=0.8):
    dominant = []
    for oid, name, _, _ in BOXES:
        ids, counts = np.unique(pred.vertex_instance[vertex_gt == oid], return_counts=True)
        best = ids[np.argmax(counts)]
        assert best != 0, f"{pred.method}: box {oid} is mostly unlabelled"
        assert counts.max() / counts.sum() >= min_share, f"{pred.method}: box {oid} is split"
        assert pred.instance_class[int(best)] == scene.classes.id_of(name)
        assert 0.0 <= pred.instance_score[int(best)] <= 1.0
        dominant.append(best)
    assert len(set(dominant)) == len(BOXES), f"{pred.method}: boxes merged"
    assert np.mean(pred.vertex_instance[vertex_gt == 0] == 0) > 0.95  # floor is stuff


def _purity(pred, vertex_gt):
    """Vertex-weighted share of each predicted instance held by its dominant GT label."""
    held = total = 0
    for i in pred.instance_ids:
        _, counts = np.unique(vertex_gt[pred.vertex_instance == i], return_counts=True)
        held, total = held + counts.max(), total + counts.sum()
    return held / total


def test_felzenszwalb_separates_the_boxes(scene, mesh, vertex_gt):
    pred = felzenszwalb_mesh(scene, FelzenszwalbConfig(tsdf=TSDF), mesh=mesh)
    _assert_boxes_separated(pred, vertex_gt, scene)
    assert pred.vertex_semantic[vertex_gt == 0].tolist().count(scene.classes.id_of("floor")) > 0.9 * (
        vertex_gt == 0).sum()


def test_felzenszwalb_graph_splits_two_planes_at_a_crease():
    # two squares of a grid meeting at a right angle: one segment each
    n = 10
    g = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) * 0.05
    a = np.c_[g, np.zeros(len(g))]                      # floor, normal +z
    b = np.c_[g[:, 0], np.zeros(len(g)), g[:, 1] + 0.05]  # wall y = 0, normal +y (concave)
    verts = np.r_[a, b]
    normals = np.r_[np.tile([0, 0, 1.0], (len(a), 1)), np.tile([0, 1.0, 0], (len(b), 1))]
    idx = np.arange(n * n).reshape(n, n)
    edges = np.r_[np.c_[idx[:-1].ravel(), idx[1:].ravel()], np.c_[idx[:, :-1].ravel(), idx[:, 1:].ravel()]]
    edges = np.r_[edges, edges + n * n, np.c_[idx[:, 0], idx[:, 0] + n * n]]
    seg = felzenszwalb_segments(verts, normals, edges, k=1.0, min_size=5)
    assert len(np.unique(seg[: n * n])) == 1 and len(np.unique(seg[n * n:])) == 1
    assert seg[0] != seg[n * n]


@pytest.mark.parametrize("stuff_removal", ["semantic", "planes"])
def test_hdbscan_separates_the_boxes(scene, mesh, vertex_gt, stuff_removal):
    pred = hdbscan_points(scene, HDBSCANConfig(tsdf=TSDF, stuff_removal=stuff_removal), mesh=mesh)
    _assert_boxes_separated(pred, vertex_gt, scene)


def test_naive_fusion_fails_without_consistent_ids(scene, consistent_scene, mesh, vertex_gt):
    config = NaiveFusionConfig(tsdf=TSDF)
    good = naive_fusion(consistent_scene, config, mesh=mesh)
    bad = naive_fusion(scene, config, mesh=mesh)
    _assert_boxes_separated(good, vertex_gt, consistent_scene)
    assert _purity(good, vertex_gt) > 0.95
    assert _purity(bad, vertex_gt) < _purity(good, vertex_gt) - 0.1
    assert np.mean(list(bad.instance_score.values())) < np.mean(list(good.instance_score.values()))


def test_vertex_observations_respect_occlusion(scene, mesh, vertex_gt):
    obs = observe_vertices(mesh.vertices, scene.train, depth_tolerance_m=0.05)
    # a seen vertex reads its own object's label (semantic = GT class in this scene)
    class_of = {oid: scene.classes.id_of(name) for oid, name, _, _ in BOXES}
    on_box = (vertex_gt[obs.vertex] > 0) & (mesh.vertices[obs.vertex, 2] > 0.08)  # off the floor
    expected = np.array([class_of[i] for i in vertex_gt[obs.vertex][on_box]])
    assert np.mean(obs.semantic[on_box] == expected) > 0.95
    assert obs.n_views == len(scene.train)
