"""The shared camera geometry: back-projection and projection are inverse, rays go
through pixel centres, and depth bounds cover what the frames saw."""

import numpy as np
import pytest

from _bench_toy_scene import BOXES, build_toy_scene
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.geometry import (backproject, bounds_from_depth, camera_directions, depth_lattice,
                                         project, world_rays)
from clusteringsdf_core.geometry.camera import look_at

K = Intrinsics(50.0, 55.0, 31.5, 24.0, 64, 48)
T = look_at(np.array([1.0, -2.0, 1.5]), np.array([0.0, 0.5, 0.4]))


def test_backprojected_points_project_to_their_pixels():
    rng = np.random.default_rng(0)
    col, row = rng.integers(0, K.width, 200), rng.integers(0, K.height, 200)
    z = rng.uniform(0.3, 6.0, 200)
    world = backproject(col + 0.5, row + 0.5, z, K, T)
    cam = (world - T[:3, 3]) @ T[:3, :3]
    assert np.allclose(cam[:, 2], z)
    u, v, front = project(cam, K)
    assert front.all() and np.array_equal(u, col) and np.array_equal(v, row)
    _, _, behind = project(-cam, K)
    assert not behind.any()


def test_world_rays_are_unit_and_pass_through_pixel_centres():
    origins, dirs = world_rays(K, T)
    assert origins.shape == dirs.shape == (K.width * K.height, 3)
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0) and np.allclose(origins, T[:3, 3])
    row, col = 17, 40
    through = backproject(np.array([col + 0.5]), np.array([row + 0.5]), np.array([2.0]), K, T)[0]
    expected = (through - T[:3, 3]) / np.linalg.norm(through - T[:3, 3])
    assert np.allclose(dirs[row * K.width + col], expected)
    assert np.allclose(camera_directions(np.array(K.cx), np.array(K.cy), K), [0.0, 0.0, 1.0])


def test_depth_lattice_rescales_intrinsics_of_another_resolution():
    depth = np.full((K.height, K.width), 2.0)
    full = depth_lattice(depth, K, T, step=1)
    half = depth_lattice(depth[::2, ::2], K, T, step=1)        # K is for 64x48, depth 32x24
    assert len(full) == K.width * K.height and len(half) == len(full) // 4
    lo, hi = full.min(0), full.max(0)
    assert np.all(half.min(0) >= lo - 0.05) and np.all(half.max(0) <= hi + 0.05)


def test_depth_lattice_drops_invalid_depth():
    depth = np.full((K.height, K.width), 2.0)
    depth[0, :] = 0.0
    depth[1, :] = np.nan
    depth[2, :] = 50.0
    pts = depth_lattice(depth, K, T, step=1, max_depth_m=10.0)
    assert len(pts) == (K.height - 3) * K.width


def test_bounds_from_depth_cover_the_boxes_and_percentiles_trim():
    scene = build_toy_scene(n_views=8)
    samples = [(f.depth_m, f.intrinsics, f.T_world_cam) for f in scene.train]
    b = bounds_from_depth(samples, step=2)
    for _, _, ext, (x, y) in BOXES:
        assert np.all(b[0] <= [x, y, 0.01]) and np.all(b[1] >= [x, y, ext[2] - 0.01])
    robust = bounds_from_depth(samples, step=2, percentile=5.0)
    assert np.all(robust[0] >= b[0]) and np.all(robust[1] <= b[1]) and np.any(robust != b)
    assert bounds_from_depth([(None, K, T), (np.zeros((4, 4)), K, T)]) is None


@pytest.mark.parametrize("ppf", [10, 4800])
def test_bounds_lattice_follows_pixels_per_frame(ppf):
    depth = np.full((K.height, K.width), 2.0)
    b = bounds_from_depth([(depth, K, T)], pixels_per_frame=ppf)
    assert b.shape == (2, 3) and np.all(b[1] > b[0])
