"""Panoptic Lifting / Contrastive Lift scenes: a tiny scene written here, read back."""

import json

import cv2
import numpy as np
import pytest

from clusteringsdf_core.data.classes import SCANNET_REDUCED as C
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.formats.panoptic_lifting import (PANOPTIC_LIFTING_CLASSES as PL,
                                                      PANOPTIC_LIFTING_TO_REDUCED,
                                                      read_panoptic_lifting)
from clusteringsdf_core.data.formats import open_dataset

W, H = 64, 48
NAMES = ["0", "10", "20", "30", "40"]


def _pose(i):
    T = np.eye(4)
    T[:3, 3] = [0.1 * i, 0.0, 1.0]
    return T


def write_pl(root, *, splits=True, confidence_key=True, bad_pose=None):
    for sub in ("color", "depth", "pose", "intrinsic", "m2f_semantics", "m2f_instance",
                "m2f_probabilities", "rs_semantics", "rs_instance"):
        (root / sub).mkdir(parents=True)
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt",
               [[40, 0, 32, 0], [0, 40, 24, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fmt="%.6f")
    for k, n in enumerate(NAMES):
        cv2.imwrite(str(root / "color" / f"{n}.jpg"), np.full((H, W, 3), 90, np.uint8))
        depth = np.full((H // 2, W // 2), 2000 + k, np.uint16)   # half resolution, registered
        depth[0, 0] = 0
        cv2.imwrite(str(root / "depth" / f"{n}.png"), depth)
        pose = np.full((4, 4), -np.inf) if n == bad_pose else _pose(k)
        np.savetxt(root / "pose" / f"{n}.txt", pose, fmt="%.9f")
        sem = np.zeros((H, W), np.uint8)
        sem[:, :W // 2] = PL.id_of("chair")
        sem[:, W // 2:] = PL.id_of("shelves")
        sem[:2] = PL.id_of("person")
        cv2.imwrite(str(root / "m2f_semantics" / f"{n}.png"), sem)
        cv2.imwrite(str(root / "rs_semantics" / f"{n}.png"), sem)
        inst = np.zeros((H, W), np.uint8)
        inst[:, :W // 2] = 5 + k                                   # per-view ids
        cv2.imwrite(str(root / "m2f_instance" / f"{n}.png"), inst)
        cv2.imwrite(str(root / "rs_instance" / f"{n}.png"), (inst > 0).astype(np.uint8) * 2)
        prob = np.zeros((H, W, len(PL)), np.float16)
        prob[..., 1] = 0.25
        prob[..., 2] = 0.75
        payload = {"probability": prob}
        if confidence_key:
            payload["confidence"] = np.full((H, W), 0.5, np.float32)
        np.savez(root / "m2f_probabilities" / f"{n}.npz", **payload)
    if splits:
        (root / "splits.json").write_text(json.dumps({"train": ["0", "20", "40"], "test": [10, 30]}))
    return root


def test_splits_poses_depth_and_native_classes(tmp_path):
    root = write_pl(tmp_path / "scene0050_02")
    ds = read_panoptic_lifting(root, classes=PL)
    assert ds.meta["splits"].endswith("splits.json") and ds.label_variant == "m2f"
    assert [f.index for f in ds.train] == [0, 20, 40] and [f.index for f in ds.test] == [10, 30]
    f = ds.test[1]
    # intrinsic_color.txt holds (40, 40, 32, 24) in the OpenCV convention: cx, cy + 0.5
    assert f.intrinsics == Intrinsics(40.0, 40.0, 32.5, 24.5, W, H)
    np.testing.assert_array_equal(f.T_world_cam, np.round(_pose(3), 9))   # as written, "%.9f"
    assert f.depth_m.shape == (H, W) and f.depth_m.dtype == np.float32
    assert f.depth_m[10, 10] == np.float32(2.003) and (f.depth_m[:2, :2] == 0).all()
    assert (f.semantic[2:, :W // 2] == PL.id_of("chair")).all()
    assert (f.gt_semantic[2:, W // 2:] == PL.id_of("shelves")).all()
    assert (f.instance[:, :W // 2] == 8).all() and (f.gt_instance[:, :W // 2] == 2).all()
    assert f.confidence.dtype == np.float32 and (f.confidence == 0.5).all()   # npz 'confidence'
    assert ds.bounds.shape == (2, 3)


def test_class_map_into_reduced_table(tmp_path):
    root = write_pl(tmp_path / "s", confidence_key=False)
    f = read_panoptic_lifting(root, class_map=PANOPTIC_LIFTING_TO_REDUCED).train[0]
    assert (f.semantic[2:, :W // 2] == C.id_of("chair")).all()
    assert (f.semantic[2:, W // 2:] == C.id_of("bookshelf")).all()
    assert (f.semantic[:2] == 0).all() and (f.gt_semantic[:2] == 0).all()   # person -> void
    assert (f.confidence == 0.75).all()                                     # max probability
    assert PANOPTIC_LIFTING_TO_REDUCED[PL.id_of("counter")] == C.id_of("otherfurniture")


def test_identity_class_space_rejects_ids_outside_the_table(tmp_path):
    root = write_pl(tmp_path / "s")
    sem = np.full((H, W), 30, np.uint8)
    cv2.imwrite(str(root / "m2f_semantics" / "0.png"), sem)
    ds = read_panoptic_lifting(root)     # identity: ids taken as SCANNET_REDUCED ids
    with pytest.raises(ValueError, match="frame 0: class id 30 outside"):
        ds.train[0]


def test_no_splits_invalid_pose_stride_and_no_labels(tmp_path):
    root = write_pl(tmp_path / "s", splits=False, bad_pose="20")
    with pytest.warns(UserWarning, match="skipped 1 frame"):
        ds = read_panoptic_lifting(root, labels=None, test_every=2)
    # positions 0..4, test = odd positions; frame 20 (position 2) skipped
    assert [f.index for f in ds.train] == [0, 40] and [f.index for f in ds.test] == [10, 30]
    assert ds.train[0].instance is None and ds.train[0].confidence is None
    ds = read_panoptic_lifting(write_pl(tmp_path / "t"), stride=2)
    assert [f.index for f in ds.train] == [0, 40] and [f.index for f in ds.test] == [10]


def test_depth_warped_with_depth_intrinsics_and_resize(tmp_path):
    root = write_pl(tmp_path / "s")
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt",
               [[20, 0, 16, 0], [0, 20, 12, 0], [0, 0, 1, 0], [0, 0, 0, 1]], fmt="%.6f")
    f = read_panoptic_lifting(root, image_size=(32, 24)).train[0]
    # colour (40, 40, 32.5, 24.5) in the core convention, halved; the depth camera
    # (20, 20, 16.5, 12.5) sits 0.25 px off it, so depth is warped, not just resized
    assert f.intrinsics == Intrinsics(20.0, 20.0, 16.25, 12.25, 32, 24)
    assert f.depth_m.shape == (24, 32) and f.depth_m[5, 5] == np.float32(2.0)
    assert f.depth_m[0, 0] == 0 and f.depth_m[0, 1] == np.float32(2.0)   # depth px 0 only
    assert f.semantic.shape == (24, 32) and f.confidence.shape == (24, 32)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing color/"):
        read_panoptic_lifting(tmp_path)
    root = write_pl(tmp_path / "s")
    (root / "splits.json").write_text(json.dumps({"train": ["0", "99"], "test": ["10"]}))
    with pytest.raises(ValueError, match=r"splits.json: train frames \['99'\]"):
        read_panoptic_lifting(root)
    (root / "splits.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match="needs a 'train' list"):
        read_panoptic_lifting(root)


def test_open_dataset_detects_panoptic_lifting(tmp_path):
    root = write_pl(tmp_path / "s")
    ds = open_dataset(root, classes=PL)
    assert ds.meta["source_format"] == "panoptic-lifting" and len(ds.test) == 2
    with pytest.warns(UserWarning, match="no machine labels nope_semantics"):
        ds = open_dataset(root, labels="nope", classes=PL)
    assert ds.train[0].instance is None and ds.label_variant == ""
