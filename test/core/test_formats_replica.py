"""Replica renders (Semantic-NeRF layout): a tiny render folder written here, read back."""

import cv2
import numpy as np
import pytest

from clusteringsdf_core.data.classes import SCANNET_REDUCED as C
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.formats import open_dataset
from clusteringsdf_core.data.formats.replica import read_replica, read_trajectory

W, H, N = 64, 48, 5
CLASS_MAP = {3: C.id_of("chair"), 7: C.id_of("wall")}   # Replica ids -> reduced table


def _pose(i):
    a = 0.4 * i
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [0.25 * i, -1.0, 0.5]
    return T


def write_replica(root, *, n=N, traj_lines=None):
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance", "machine"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[..., 1] = 10 * i
        cv2.imwrite(str(root / "rgb" / f"rgb_{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        d = np.full((H, W), 800 + 7 * i, np.uint16)
        d[3, 4] = 0
        cv2.imwrite(str(root / "depth" / f"depth_{i}.png"), d)
        sem = np.full((H, W), 7, np.uint16)
        sem[:, :20] = 3
        sem[0] = 99                                      # not in the class map -> void
        cv2.imwrite(str(root / "semantic_class" / f"semantic_class_{i}.png"), sem)
        inst = np.full((H, W), 1, np.uint16)
        inst[:, :20] = 42
        cv2.imwrite(str(root / "semantic_instance" / f"semantic_instance_{i}.png"), inst)
        cv2.imwrite(str(root / "machine" / f"{i}.png"), np.full((H, W), i + 1, np.uint16))
    lines = [" ".join(f"{v:.17g}" for v in _pose(i).ravel()) for i in range(n)]
    (root / "traj_w_c.txt").write_text("\n".join(traj_lines or lines) + "\n")
    return root


def test_read_back_with_fov_intrinsics_and_class_map(tmp_path):
    root = write_replica(tmp_path / "room0")
    ds = read_replica(root, class_map=CLASS_MAP, machine_instance_dir="machine", test_every=5)
    assert [f.index for f in ds.train] == [0, 1, 3, 4] and [f.index for f in ds.test] == [2]
    f = ds.train[2]
    K = f.intrinsics                                   # hfov 90 -> f = W / 2, centred
    assert (K.width, K.height, K.cx, K.cy) == (W, H, 32.0, 24.0)
    assert (K.fx, K.fy) == (pytest.approx(32.0, abs=1e-9), pytest.approx(32.0, abs=1e-9))
    np.testing.assert_array_equal(f.T_world_cam, _pose(3))
    expected = np.full((H, W), np.float32(821) / np.float32(1000), np.float32)
    expected[3, 4] = 0
    np.testing.assert_array_equal(f.depth_m, expected)
    assert f.depth_m[3, 4] == 0 and f.depth_m.dtype == np.float32
    assert (f.rgb[..., 1] == 30).all()
    assert (f.gt_semantic[1:, :20] == C.id_of("chair")).all()
    assert (f.gt_semantic[1:, 20:] == C.id_of("wall")).all()
    assert (f.gt_semantic[0] == 0).all()
    assert (f.gt_instance[1:, :20] == 42).all() and (f.gt_instance[:, 20:] == 0).all()   # wall is stuff
    assert (f.gt_instance[0] == 0).all()                                                # void
    assert (f.instance == 4).all()
    assert f.stamp_s == pytest.approx(0.1)
    assert ds.bounds.shape == (2, 3)


def test_depth_scale_explicit_K_resize_and_stride(tmp_path):
    root = write_replica(tmp_path / "s")
    K = np.array([[40.0, 0, 31.5], [0, 41.0, 23.5], [0, 0, 1]])   # OpenCV: centred at (W-1)/2
    ds = read_replica(root, K=K, depth_scale=500.0, image_size=(32, 24), stride=2, test_every=0,
                      class_map=CLASS_MAP)
    assert [f.index for f in ds.train] == [0, 2, 4]
    f = ds.train[1]
    # core convention: centred at W/2, H/2 (31.5 + 0.5 = 32), and still centred once halved
    assert f.intrinsics == Intrinsics(20.0, 20.5, 16.0, 12.0, 32, 24)
    assert ds.train[0].intrinsics.cx == 0.5 * ds.train[0].intrinsics.width
    assert f.depth_m[10, 10] == np.float32(814 / 500)
    ds = read_replica(root, hfov_deg=60.0, test_every=0, class_map=CLASS_MAP)
    assert ds.train[0].intrinsics.fx == pytest.approx(32 / np.tan(np.radians(30)))
    assert (ds.train[0].intrinsics.cx, ds.train[0].intrinsics.cy) == (32.0, 24.0)   # fov: not shifted


def test_identity_classes_must_fit_the_table(tmp_path):
    ds = read_replica(write_replica(tmp_path / "s"), test_every=0)
    with pytest.raises(ValueError, match="class id 99 outside the class table"):
        ds.train[0]


def test_trajectory_errors(tmp_path):
    root = write_replica(tmp_path / "a", traj_lines=["1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"] * 3)
    with pytest.raises(ValueError, match="3 poses, but frame rgb_4"):
        read_replica(root)
    root = write_replica(tmp_path / "b", traj_lines=["1 0 0"])
    with pytest.raises(ValueError, match="line 1 has 3 numbers"):
        read_trajectory(root / "traj_w_c.txt")
    root = write_replica(tmp_path / "c", traj_lines=["2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"] * 5)
    with pytest.raises(ValueError, match="line 1: pose's rotation"):
        read_replica(root)
    with pytest.raises(FileNotFoundError, match="missing rgb/"):
        read_replica(tmp_path / "nothing")


def test_open_dataset_detects_replica(tmp_path):
    ds = open_dataset(write_replica(tmp_path / "office0"), labels="machine", class_map=CLASS_MAP)
    assert ds.meta["source_format"] == "replica" and ds.train[0].instance is not None
