"""open_dataset: which format a path is in, and what it says when it is in none."""

import numpy as np
import pytest

from clusteringsdf_core.data.dataset import SceneDataset, write_scene
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.data.formats import FORMATS, detect_format, open_dataset
from clusteringsdf_core.data.formats.common import split_train_test


def _canonical(root):
    K = Intrinsics(20.0, 20.0, 8.0, 6.0, 16, 12)
    frames = [Frame(index=i, rgb=np.full((12, 16, 3), 10 * i, np.uint8), T_world_cam=np.eye(4),
                    intrinsics=K, depth_m=np.full((12, 16), 1.0, np.float32),
                    instance=np.full((12, 16), i + 1, np.int32)) for i in range(3)]
    ds = SceneDataset(name="tiny", train=frames[:2], test=frames[2:])
    return write_scene(root, ds, label_variant="sim")


def _touch_dirs(root, *names):
    for n in names:
        (root / n).mkdir(parents=True)
    return root


def test_formats_are_described_in_detection_order():
    assert [f.name for f in FORMATS] == ["canonical", "scannet-sens", "panoptic-lifting",
                                         "scannet-export", "replica"]
    assert all(f.detected_by and f.labels for f in FORMATS)


def test_canonical_scene_goes_to_load_scene(tmp_path):
    root = _canonical(tmp_path / "scene")
    ds = open_dataset(root)
    assert ds.meta["source_format"] == "canonical" and ds.label_variant == "sim"
    assert len(ds.train) == 2 and (ds.train[1].instance == 2).all()
    assert open_dataset(root, labels=None).name == "tiny"


def test_detection_rules(tmp_path):
    export = _touch_dirs(tmp_path / "export", "color", "pose", "intrinsic")
    assert detect_format(export).name == "scannet-export"
    (export / "splits.json").write_text("{}")
    assert detect_format(export).name == "panoptic-lifting"
    pl = _touch_dirs(tmp_path / "pl", "color", "pose", "intrinsic", "rs_semantics")
    assert detect_format(pl).name == "panoptic-lifting"
    replica = _touch_dirs(tmp_path / "replica", "rgb")
    (replica / "traj_w_c.txt").write_text("")
    assert detect_format(replica).name == "replica"
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "scene0000_00.sens").write_bytes(b"")
    assert detect_format(scan).name == "scannet-sens"
    assert detect_format(scan / "scene0000_00.sens").name == "scannet-sens"
    (scan / "other.sens").write_bytes(b"")          # two .sens files: ambiguous
    with pytest.raises(ValueError):
        detect_format(scan)


def test_unrecognised_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError) as err:
        open_dataset(tmp_path / "junk")
    msg = str(err.value)
    assert "not a recognised scene" in msg
    for f in FORMATS:
        assert f.name in msg and f.detected_by in msg
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        open_dataset(tmp_path / "missing")


def test_split_rule():
    assert split_train_test(6, 3) == ([0, 2, 3, 5], [1, 4])
    assert split_train_test(3, 0) == ([0, 1, 2], [])
