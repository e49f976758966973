"""ScanNet .sens files: a tiny file written byte by byte here, read back exactly."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.formats import open_dataset
from clusteringsdf_core.data.formats.sens import SensFile, read_sens

W, H = 64, 48
K = np.array([[50.0, 0.0, 32.0, 0.0], [0.0, 50.0, 24.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1.0]])
# The header's K is in the OpenCV convention (pixel centres at integers); the core's has
# pixel centres at i + 0.5, so the reader's principal point is the file's + 0.5.
K_CORE = Intrinsics(50.0, 50.0, 32.0 + 0.5, 24.0 + 0.5, W, H)


def _pose(i):
    a = 0.3 * i
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    T[:3, 3] = [0.5 * i, -0.25, 1.5]
    return T.astype(np.float32)


def _rgb(i):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 40 * (i + 1)
    rgb[..., 1] = 100
    rgb[..., 2] = 200 - 30 * i
    return rgb


def _depth(i):
    d = np.full((H, W), 1000 + 250 * i, np.uint16)
    d[:4, :4] = 0
    d[10, 20] = 3333
    return d


def write_sens(path, poses, *, version=4, truncate=0, color_type=2, depth_type=1,
               corrupt_depth_of=None):
    out = bytearray()
    out += struct.pack("<I", version)
    name = b"StructureSensor"
    out += struct.pack("<Q", len(name)) + name
    for m in (K, np.eye(4), K, np.eye(4)):  # intrinsic/extrinsic colour, intrinsic/extrinsic depth
        out += np.asarray(m, "<f4").tobytes()
    out += struct.pack("<ii", color_type, depth_type)
    out += struct.pack("<4I", W, H, W, H)
    out += struct.pack("<f", 1000.0)
    out += struct.pack("<Q", len(poses))
    for i, T in enumerate(poses):
        bgr = cv2.cvtColor(_rgb(i), cv2.COLOR_RGB2BGR)
        ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
        assert ok
        color = jpg.tobytes()
        depth = zlib.compress(_depth(i).astype("<u2").tobytes())
        if corrupt_depth_of == i:
            depth = b"not zlib at all"
        out += np.asarray(T, "<f4").tobytes()
        out += struct.pack("<QQQQ", 1_000_000 + 33_333 * i, 1_000_100 + 33_333 * i, len(color), len(depth))
        out += color + depth
    out += b"\x00" * 16  # IMU section, ignored
    if truncate:
        out = out[:-truncate]
    path.write_bytes(bytes(out))
    return path


def test_header_and_index(tmp_path):
    sens = SensFile(write_sens(tmp_path / "s.sens", [_pose(i) for i in range(3)]))
    h = sens.header
    assert (h.version, h.sensor_name) == (4, "StructureSensor")
    assert (h.color_compression, h.depth_compression) == ("jpeg", "zlib_ushort")
    assert (h.color_width, h.color_height, h.depth_width, h.depth_height) == (W, H, W, H)
    assert h.depth_shift == 1000.0
    assert len(sens) == 3
    np.testing.assert_array_equal(h.intrinsic_depth, K)
    assert sens.frames[2].timestamp_color_us == 1_000_000 + 2 * 33_333


def test_three_frames_read_back_exactly(tmp_path):
    path = write_sens(tmp_path / "scene0000_00.sens", [_pose(i) for i in range(3)])
    ds = read_sens(path, test_every=0)
    assert ds.name == "scene0000_00" and len(ds.train) == 3 and len(ds.test) == 0
    assert ds.train.stamps == pytest.approx([1.0, 1.033333, 1.066666])
    for i, f in enumerate(ds.train):
        assert f.index == i
        np.testing.assert_array_equal(f.T_world_cam, _pose(i).astype(np.float64))
        assert f.T_world_cam.dtype == np.float64
        assert f.intrinsics == K_CORE
        np.testing.assert_array_equal(f.depth_m, _depth(i).astype(np.float32) / np.float32(1000))
        assert f.depth_m.dtype == np.float32 and f.depth_m[0, 0] == 0
        assert f.depth_m[10, 20] == np.float32(3.333)
        assert np.abs(f.rgb.astype(int) - _rgb(i)).max() <= 2  # JPEG at quality 100
        assert f.stamp_s == pytest.approx(1.0 + 0.033333 * i)
        assert f.instance is None and f.gt_semantic is None
    assert ds.bounds.shape == (2, 3) and np.all(ds.bounds[0] < ds.bounds[1])


def test_invalid_pose_skipped_with_warning_and_stride(tmp_path):
    poses = [_pose(i) for i in range(5)]
    poses[1] = np.full((4, 4), -np.inf, np.float32)
    path = write_sens(tmp_path / "s.sens", poses)
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        ds = read_sens(path, test_every=0)
    assert [f.index for f in ds.train] == [0, 2, 3, 4]
    assert ds.meta["skipped_invalid_pose"] == [1]
    ds = read_sens(path, stride=2, test_every=0)   # frames 0, 2, 4: no invalid one
    assert [f.index for f in ds.train] == [0, 2, 4]


def test_split_and_resize(tmp_path):
    path = write_sens(tmp_path / "s.sens", [_pose(i) for i in range(4)])
    ds = read_sens(path, test_every=2, image_size=(32, 24))
    assert [f.index for f in ds.train] == [0, 2] and [f.index for f in ds.test] == [1, 3]
    f = ds.test[0]
    assert f.intrinsics == Intrinsics(25.0, 25.0, 32.5 / 2, 24.5 / 2, 32, 24)   # K_CORE halved
    assert f.rgb.shape == (24, 32, 3) and f.depth_m.shape == (24, 32)


def test_truncated_file_names_file_and_frame(tmp_path):
    path = write_sens(tmp_path / "bad.sens", [_pose(i) for i in range(3)], truncate=16 + 40)
    with pytest.raises(ValueError, match=r"bad\.sens.*frame 2"):
        read_sens(path)


def test_corrupt_depth_names_frame_when_read(tmp_path):
    path = write_sens(tmp_path / "c.sens", [_pose(i) for i in range(3)], corrupt_depth_of=1)
    with pytest.raises(ValueError, match=r"c\.sens: frame 1: corrupt zlib"):
        read_sens(path, bounds_frames=0, test_every=0).train[1]


def test_bad_version_and_compression(tmp_path):
    with pytest.raises(ValueError, match="version 3"):
        SensFile(write_sens(tmp_path / "v.sens", [_pose(0)], version=3))
    with pytest.raises(ValueError, match="depth compression 2"):
        SensFile(write_sens(tmp_path / "o.sens", [_pose(0)], depth_type=2))
    with pytest.raises(FileNotFoundError):
        SensFile(tmp_path / "missing.sens")


def test_open_dataset_detects_sens(tmp_path):
    (tmp_path / "scene").mkdir()
    path = write_sens(tmp_path / "scene" / "scene0001_00.sens", [_pose(i) for i in range(3)])
    assert open_dataset(path).meta["source_format"] == "scannet-sens"
    assert len(open_dataset(path.parent, test_every=0).train) == 3


def test_frames_written_as_sens_read_back(tmp_path):
    from clusteringsdf_core.data.formats.sens import write_sens as write_frames
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene

    scene = generate_scene(SyntheticSceneConfig(furniture="procedural", width=48, height=36, num_train=3,
                                                num_test=0, num_objects=2, depth_noise=False))
    frames = list(scene.dataset.train)
    path = write_frames(tmp_path / "synthetic.sens", frames)
    ds = read_sens(path, test_every=0)
    assert len(ds.train) == 3
    for src, f in zip(frames, ds.train):
        np.testing.assert_allclose(f.intrinsics.K, src.intrinsics.K, rtol=1e-6)   # float32 in the file
        assert (f.intrinsics.width, f.intrinsics.height) == (src.intrinsics.width, src.intrinsics.height)
        np.testing.assert_allclose(f.T_world_cam, src.T_world_cam, atol=1e-6)
        assert np.abs(f.depth_m - src.depth_m).max() <= 0.0005 + 1e-6        # mm steps
        assert np.abs(f.rgb.astype(int) - src.rgb).mean() < 4.0               # JPEG
        assert f.stamp_s == pytest.approx(src.stamp_s, abs=1e-6) and f.instance is None
    with pytest.raises(ValueError, match="no depth"):
        write_frames(tmp_path / "x.sens", [frames[0].__class__(**{**frames[0].__dict__, "depth_m": None})])
