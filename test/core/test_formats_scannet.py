"""ScanNet export folders: a tiny export written here (colour 128x96, depth 64x48), read back."""

import cv2
import numpy as np
import pytest

from clusteringsdf_core.data.classes import SCANNET_REDUCED as C
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.formats import open_dataset
from clusteringsdf_core.data.formats.scannet import (NYU40_NAMES, NYU40_TO_REDUCED, read_label_table,
                                             read_scannet_export)

CW, CH, DW, DH = 128, 96, 64, 48
# Intrinsic files are in the OpenCV convention (pixel centres at integers); the reader's
# intrinsics put pixel centres at i + 0.5, so their cx, cy are the file's + 0.5.
K_COLOR = (100.0, 100.0, 64.0, 48.0)
K_DEPTH = (50.0, 50.0, 32.0, 24.0)
TSV = "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n" \
      "2\tchair\tchair\t10\t5\tchair\n" \
      "21\twall\twall\t99\t1\twall\n" \
      "40\tpillow\tpillow\t3\t18\tpillow\n" \
      "77\tmystery\tmystery\t1\t\t\n"


def _mat(K):
    fx, fy, cx, cy = K
    return np.array([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _pose(i):
    T = np.eye(4)
    a = 0.2 * i
    T[:3, :3] = [[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]
    T[:3, 3] = [i, 2.0, 1.25]
    return T


def _depth_mm(i):
    d = np.full((DH, DW), 1500 + 100 * i, np.uint16)
    d[0, :] = 0
    d[5, 7] = 2468
    return d


def write_export(root, *, n=4, invalid=(2,), K_depth=K_DEPTH, tsv_in_parent=True,
                 machine=True):
    root.mkdir(parents=True)
    for sub in ("color", "depth", "pose", "intrinsic", "label-filt", "instance-filt", "machine"):
        (root / sub).mkdir()
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", _mat(K_COLOR), fmt="%f")
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", _mat(K_depth), fmt="%f")
    for i in range(n):
        rgb = np.zeros((CH, CW, 3), np.uint8)
        rgb[:, :CW // 2] = (200, 30, 30)
        rgb[:, CW // 2:] = (20, 180, 60 + 20 * i)
        cv2.imwrite(str(root / "color" / f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(root / "depth" / f"{i}.png"), _depth_mm(i))
        pose = np.full((4, 4), -np.inf) if i in invalid else _pose(i)
        np.savetxt(root / "pose" / f"{i}.txt", pose, fmt="%f")
        label = np.zeros((CH, CW), np.uint16)     # ScanNet ids: chair (2) left, wall (21) right
        label[:, :CW // 2] = 2
        label[:, CW // 2:] = 21
        label[:4] = 40                            # pillow -> void
        cv2.imwrite(str(root / "label-filt" / f"{i}.png"), label)
        inst = np.zeros((CH, CW), np.uint8)
        inst[:, :CW // 2] = 3
        inst[:, CW // 2:] = 7
        cv2.imwrite(str(root / "instance-filt" / f"{i}.png"), inst)
        if machine:
            m = np.zeros((CH, CW), np.uint16)
            m[CH // 2:] = 10 + i                  # per-view ids
            cv2.imwrite(str(root / "machine" / f"{i}.png"), m)
    (root.parent if tsv_in_parent else root).joinpath("scannetv2-labels.combined.tsv").write_text(TSV)
    return root


def test_label_table_and_nyu40_mapping(tmp_path):
    (tmp_path / "t.tsv").write_text(TSV)
    assert read_label_table(tmp_path / "t.tsv") == {2: 5, 21: 1, 40: 18, 77: 0}
    assert len(NYU40_NAMES) == 40 and set(NYU40_TO_REDUCED) == set(range(1, 41))
    for nyu, name in NYU40_NAMES.items():  # same-named classes map to themselves
        if name in {c.name for c in C.classes}:
            assert NYU40_TO_REDUCED[nyu] == C.id_of(name)
    assert NYU40_TO_REDUCED[15] == C.id_of("bookshelf") and NYU40_TO_REDUCED[40] == 0


def test_export_read_back(tmp_path):
    root = write_export(tmp_path / "scans" / "scene0000_00")
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        ds = read_scannet_export(root, machine_instance_dir="machine", test_every=3)
    assert ds.name == "scene0000_00" and ds.meta["skipped_invalid_pose"] == ["2"]
    # frames 0, 1, 3 remain; position 1 (frame 1) is the test view
    assert [f.index for f in ds.train] == [0, 3] and [f.index for f in ds.test] == [1]
    assert ds.train.stamps == [0.0, 0.1]
    f = ds.train[1]
    assert f.intrinsics == Intrinsics(50.0, 50.0, 32.5, 24.5, DW, DH)   # depth camera grid
    np.testing.assert_array_equal(f.T_world_cam, np.round(_pose(3), 6))  # "%f" text, as ScanNet writes
    np.testing.assert_array_equal(f.depth_m, _depth_mm(3).astype(np.float32) / np.float32(1000))
    assert f.depth_m[5, 7] == np.float32(2.468) and f.depth_m[0, 0] == 0
    assert f.rgb.shape == (DH, DW, 3)
    assert np.abs(f.rgb[20, 10].astype(int) - (200, 30, 30)).max() <= 3
    assert np.abs(f.rgb[20, 50].astype(int) - (20, 180, 120)).max() <= 3
    # labels: ScanNet id -> NYU40 (tsv found in the parent) -> reduced table
    assert f.gt_semantic.dtype == np.int32
    assert (f.gt_semantic[2:, :DW // 2] == C.id_of("chair")).all()
    assert (f.gt_semantic[2:, DW // 2:] == C.id_of("wall")).all()
    assert (f.gt_semantic[:2] == 0).all()
    # instances: consistent ids kept on things, zeroed on stuff (wall) and void (pillow)
    assert (f.gt_instance[2:, :DW // 2] == 3).all() and (f.gt_instance[:, DW // 2:] == 0).all()
    assert (f.gt_instance[:2] == 0).all()
    assert (f.instance[DH // 2:] == 13).all() and (f.instance[:DH // 2] == 0).all()
    assert ds.meta["gt_label_space"].startswith("scannet ids via")


def test_bounds_are_the_backprojected_depth(tmp_path):
    root = write_export(tmp_path / "s", machine=False)
    with pytest.warns(UserWarning):
        ds = read_scannet_export(root, test_every=0)
    pts = []
    fx, fy, cx, cy = K_DEPTH                      # OpenCV file values: pixel (u, v) centred at (u, v)
    v, u = np.mgrid[0:DH, 0:DW]
    for f in ds.train:
        z = f.depth_m.astype(np.float64)
        ok = z > 0
        p = np.stack([(u[ok] - cx) / fx * z[ok], (v[ok] - cy) / fy * z[ok], z[ok]], 1)
        pts.append(p @ f.T_world_cam[:3, :3].T + f.T_world_cam[:3, 3])
    pts = np.concatenate(pts)
    np.testing.assert_allclose(ds.bounds, [pts.min(0), pts.max(0)], atol=1e-9)


def test_color_and_labels_are_warped_into_the_depth_camera(tmp_path):
    # depth principal point 2 px left of the scaled colour one (both files shifted by +0.5:
    # colour axis at x = 64.5, depth axis at x = 30.5): the colour/label edge at colour
    # x = 64 (0.5 colour px left of the axis) must land at depth x = 30.25, not 32.25.
    root = write_export(tmp_path / "s", invalid=(), K_depth=(50.0, 50.0, 30.0, 24.0), machine=False)
    ds = read_scannet_export(root, test_every=0)
    f = ds.train[0]
    assert f.intrinsics == Intrinsics(50.0, 50.0, 30.5, 24.5, DW, DH)
    assert (f.gt_semantic[10:, 29] == C.id_of("chair")).all()
    assert (f.gt_semantic[10:, 30] == C.id_of("wall")).all()
    assert (f.gt_semantic[10:, -2:] == 0).all()   # outside the colour image: void
    assert f.rgb[20, 28, 0] > 150 and f.rgb[20, 31, 0] < 60


def test_opencv_projection_is_reproduced_at_pixel_centres(tmp_path):
    # A point that the file's K (OpenCV: cv2.projectPoints) puts at integer pixel (u, v)
    # is at (u + 0.5, v + 0.5) with the reader's intrinsics, i.e. at the centre of the
    # same pixel (u, v); back-projecting that pixel centre gives the point's ray again.
    root = write_export(tmp_path / "s", invalid=(), machine=False)
    K = read_scannet_export(root, test_every=0).train[0].intrinsics
    fx, fy, cx, cy = K_DEPTH
    K_file = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    for u, v, z in [(40, 30, 2.0), (0, 0, 1.5), (DW - 1, DH - 1, 3.25), (32, 24, 1.0)]:
        X = np.array([(u - cx) / fx * z, (v - cy) / fy * z, z])
        uv, _ = cv2.projectPoints(X[None], np.zeros(3), np.zeros(3), K_file, None)
        np.testing.assert_allclose(uv.ravel(), [u, v], atol=1e-9)       # OpenCV: integer pixel
        np.testing.assert_allclose(K.K @ X / z, [u + 0.5, v + 0.5, 1.0], atol=1e-12)
        ray = np.linalg.solve(K.K, [u + 0.5, v + 0.5, 1.0])
        np.testing.assert_allclose(ray * z, X, atol=1e-12)


def test_color_to_depth_warp_samples_the_right_colour_pixel(tmp_path):
    # Machine labels = a unique id per colour pixel, so the warped map says which colour
    # pixel each depth pixel sampled. Colour (100, 100, 64.5, 48.5) and depth
    # (50, 50, 30.5, 24.125) (file values + 0.5): depth pixel centre (j + 0.5, i + 0.5) is
    # colour point (2j + 4.5, 2i + 1.25), i.e. colour pixel (2j + 4, 2i + 1) after rounding
    # of the 0.75 offset. Shifting only one of the two K (or neither) moves this by 0.5 or
    # 1 colour px along x or y, which picks another pixel.
    root = write_export(tmp_path / "s", invalid=(), K_depth=(50.0, 50.0, 30.0, 23.625))
    rows, cols = np.mgrid[0:CH, 0:CW]
    for i in range(4):
        cv2.imwrite(str(root / "machine" / f"{i}.png"), (1 + rows * CW + cols).astype(np.uint16))
    f = read_scannet_export(root, machine_instance_dir="machine", test_every=0).train[0]
    assert f.intrinsics == Intrinsics(50.0, 50.0, 30.5, 24.125, DW, DH)
    i, j = np.mgrid[0:DH, 0:DW]
    r, c = 2 * i + 1, 2 * j + 4
    inside = (r < CH) & (c < CW)
    np.testing.assert_array_equal(f.instance[inside], (1 + r * CW + c)[inside])
    assert (f.instance[~inside] == 0).all()          # beyond the colour image: no label

def test_resize_scales_intrinsics(tmp_path):
    root = write_export(tmp_path / "s", invalid=(), machine=False)
    f = read_scannet_export(root, image_size=(32, 24), test_every=0).train[0]
    assert f.intrinsics == Intrinsics(25.0, 25.0, 32.5 / 2, 24.5 / 2, 32, 24)   # (32, 24) + 0.5, halved
    assert f.rgb.shape == (24, 32, 3) and f.gt_semantic.shape == (24, 32) and f.depth_m.shape == (24, 32)
    assert f.depth_m[5, 5] == np.float32(1.5)


def test_without_tsv_labels_are_nyu40(tmp_path):
    root = write_export(tmp_path / "a" / "s", invalid=(), machine=False)
    (tmp_path / "a" / "scannetv2-labels.combined.tsv").unlink()
    with pytest.warns(UserWarning, match="NYU40"):
        ds = read_scannet_export(root, test_every=0)
    f = ds.train[0]
    # raw values now read as NYU40: 2 = floor (stuff), 21 = clothes (void)
    assert (f.gt_semantic[5:, :DW // 2] == C.id_of("floor")).all()
    assert (f.gt_semantic[5:, DW // 2:] == 0).all()
    assert (f.gt_instance == 0).all()


def test_open_dataset_and_errors(tmp_path):
    root = write_export(tmp_path / "s", invalid=(), machine=False)
    ds = open_dataset(root, test_every=0)
    assert ds.meta["source_format"] == "scannet-export" and len(ds.train) == 4
    with pytest.raises(FileNotFoundError, match="missing color/"):
        read_scannet_export(tmp_path)
    with pytest.raises(FileNotFoundError, match="machine instance label folder"):
        read_scannet_export(root, machine_instance_dir="nope")
    for i in range(4):
        np.savetxt(root / "pose" / f"{i}.txt", np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="every frame has an invalid pose"), pytest.warns(UserWarning):
        read_scannet_export(root)
