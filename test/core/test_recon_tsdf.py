"""TSDF fusion and meshing on a tiny ray-cast scene (floor + three boxes)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from _bench_toy_scene import BOXES, COLOURS, build_toy_scene
from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.geometry import depth_lattice
from clusteringsdf_core.recon import TSDFConfig, TSDFVolume, reconstruct_mesh

VOXEL = 0.04


@pytest.fixture(scope="module")
def scene():
    return build_toy_scene(n_views=8)


@pytest.fixture(scope="module")
def mesh(scene):
    return reconstruct_mesh(scene.train, TSDFConfig(voxel_size_m=VOXEL), bounds=scene.bounds)


def _depth_points(frames, stride=2):
    return np.concatenate([depth_lattice(f.depth_m, f.intrinsics, f.T_world_cam, step=stride) for f in frames])


def test_mesh_lies_on_the_observed_surfaces(scene, mesh):
    observed = _depth_points(scene.train)
    assert len(mesh.faces) > 1000
    accuracy, _ = cKDTree(observed).query(mesh.vertices)
    completeness, _ = cKDTree(mesh.vertices).query(observed)
    assert np.percentile(accuracy, 99) < 2 * VOXEL
    assert np.mean(completeness < 2 * VOXEL) > 0.95
    assert mesh.metadata["tsdf"]["frames"] == len(scene.train)


def test_normals_point_into_free_space_and_colours_follow_the_images(mesh):
    v, n = np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals)
    floor = (v[:, 2] < 0.02) & (np.linalg.norm(v[:, :2], axis=1) < 1.5)
    far_from_boxes = np.ones(len(v), dtype=bool)
    for _, _, ext, (x, y) in BOXES:
        far_from_boxes &= np.max(np.abs(v[:, :2] - [x, y]) - np.array(ext[:2]) / 2, axis=1) > 0.15
    assert np.mean(n[floor & far_from_boxes, 2] > 0.9) > 0.95
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    oid, _, ext, (x, y) = BOXES[0]
    top = (np.abs(v[:, 2] - ext[2]) < 0.02) & (np.abs(v[:, 0] - x) < ext[0] / 2 - 0.08) & \
          (np.abs(v[:, 1] - y) < ext[1] / 2 - 0.08)
    assert top.sum() > 10
    assert np.all(np.abs(colours[top].astype(int) - COLOURS[oid]).max(axis=1) <= 2)


def test_unobserved_volume_gives_an_empty_mesh_and_bad_configs_raise():
    vol = TSDFVolume(np.array([[0, 0, 0], [1, 1, 1.0]]), 0.1, 0.3)
    assert len(vol.extract_mesh().faces) == 0
    with pytest.raises(ValueError):
        TSDFVolume(np.array([[0, 0, 0], [100, 100, 100.0]]), 0.01, 0.03, max_voxels=1000)
    with pytest.raises(ConfigError):
        TSDFConfig(min_depth_m=2.0, max_depth_m=1.0)
