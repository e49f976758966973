"""Replica renders in the Semantic-NeRF layout (also used by DM-NeRF, ObjectSDF++ and others).

Layout::

    <scene>/rgb/rgb_<i>.png                        8-bit colour
    <scene>/depth/depth_<i>.png                    uint16 depth, value / depth_scale = metres
                                                   (depth_scale 1000 in Semantic-NeRF's renders)
    <scene>/semantic_class/semantic_class_<i>.png  class ids (Replica's own class ids)
    <scene>/semantic_instance/semantic_instance_<i>.png   instance ids, consistent over the scene
    <scene>/traj_w_c.txt                           line i = flattened 4x4 camera-to-world of frame i

Camera: a pinhole with the same focal length in x and y from a horizontal field of
view (Semantic-NeRF renders 640x480 at 90 degrees; ``f = W / 2 / tan(hfov / 2)``)
and a centred principal point (cx = W / 2 in the core convention), or an explicit
``K`` at the rendered size, given in the OpenCV convention (pixel centres at integers,
centred cx = (W - 1) / 2) and read with :meth:`Intrinsics.from_opencv_K`. Poses are
camera-to-world of an OpenCV-style camera (x right, y down, z forward), the
convention Semantic-NeRF's ray generation defaults to ("opencv"); the world is
whatever frame the trajectory was rendered in (not re-oriented; not checked here to
be z-up).

Classes: ``class_map`` maps the png's class ids into ``classes`` (ids it does not
name -> void); without it the pngs are assumed to hold ids of ``classes`` already.
GT instance ids on pixels whose class is stuff or void are set to 0.
Machine instance labels come from an optional folder (``<i>.png`` or ``<prefix>_<i>.png``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.dataset import SceneDataset, read_png16, read_rgb
from clusteringsdf_core.data.frame import Frame, FrameSequence, Intrinsics, check_pose
from clusteringsdf_core.data.formats.common import (class_lut, evenly_spaced, map_class_ids,
                                                    resolve_optional_dir, split_train_test, strided)
from clusteringsdf_core.geometry.bounds import bounds_from_depth

__all__ = ["read_replica", "read_trajectory", "SEMANTIC_NERF_HFOV_DEG"]

SEMANTIC_NERF_HFOV_DEG = 90.0
_TRAILING_INT = re.compile(r"(?:^|_)(\d+)$")


def read_trajectory(path: str | Path) -> np.ndarray:
    """``traj_w_c.txt``: (N, 4, 4) float64 camera-to-world, one flattened row-major pose a line."""
    path = Path(path)
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != 16]
    if bad:
        raise ValueError(f"{path}: line {bad[0] + 1} has {len(rows[bad[0]])} numbers, expected 16")
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 4, 4)
    except ValueError as exc:
        raise ValueError(f"{path}: not numeric ({exc})") from None


def _indexed_pngs(folder: Path) -> dict[int, Path]:
    out = {}
    for p in folder.glob("*.png"):
        m = _TRAILING_INT.search(p.stem)
        if m:
            out[int(m.group(1))] = p
    return out


def read_replica(root: str | Path, *, hfov_deg: float = SEMANTIC_NERF_HFOV_DEG,
                 K: np.ndarray | None = None, depth_scale: float = 1000.0,
                 class_map: Mapping[int, int] | None = None, classes: ClassTable = SCANNET_REDUCED,
                 machine_instance_dir: str | Path | None = None,
                 image_size: tuple[int, int] | None = None, stride: int = 1, test_every: int = 8,
                 bounds_frames: int = 16, name: str | None = None) -> SceneDataset:
    """Read Semantic-NeRF-style Replica renders (layout and conventions: module docstring).

    Frames are the ``rgb_<i>.png`` found, in order of ``i`` (``Frame.index = i``, the
    line of ``traj_w_c.txt``), every ``stride``-th kept; every ``test_every``-th view
    is held out. ``image_size`` = (width, height) to resize to. ``stamp_s = i / 30``
    (nominal: renders have no time).
    """
    root = Path(root)
    if not (root / "rgb").is_dir():
        raise FileNotFoundError(f"{root} is not a Replica render folder: missing rgb/")
    traj_path = root / "traj_w_c.txt"
    if not traj_path.is_file():
        raise FileNotFoundError(f"{root} is not a Replica render folder: missing traj_w_c.txt")
    rgb_files = _indexed_pngs(root / "rgb")
    if not rgb_files:
        raise ValueError(f"{root}: no rgb/rgb_<i>.png frames")
    poses_all = read_trajectory(traj_path)
    ids = strided(sorted(rgb_files), stride)
    if ids[-1] >= len(poses_all):
        raise ValueError(f"{traj_path}: {len(poses_all)} poses, but frame rgb_{ids[-1]} needs "
                         f"line {ids[-1] + 1}")
    poses = {}
    for i in ids:
        try:
            poses[i] = check_pose(poses_all[i])
        except ValueError as exc:
            raise ValueError(f"{traj_path}: line {i + 1}: {exc}") from None

    first = read_rgb(rgb_files[ids[0]])
    h, w = first.shape[:2]
    native = (Intrinsics.from_opencv_K(K, w, h) if K is not None
              else Intrinsics.from_fov(w, h, float(hfov_deg)))
    lut = None if class_map is None else class_lut(class_map, classes)
    is_thing = classes.is_thing_lut()
    machine = resolve_optional_dir(root, machine_instance_dir, "machine instance label")
    machine_files = _indexed_pngs(machine) if machine is not None else {}

    def optional(sub: str, i: int) -> np.ndarray | None:
        p = root / sub / f"{sub}_{i}.png"
        if not p.is_file():
            return None
        img = read_png16(p)
        return img if img.ndim == 2 else img[..., 0]

    def depth_of(i: int) -> np.ndarray | None:
        d = optional("depth", i)
        return None if d is None else d.astype(np.float32) / np.float32(depth_scale)

    def load_native(i: int) -> Frame:
        where = f"{root}: frame {i}"
        sem = optional("semantic_class", i)
        gt_sem = None if sem is None else map_class_ids(sem, lut, classes, where)
        inst = optional("semantic_instance", i)
        gt_inst = None
        if inst is not None:
            gt_inst = inst.astype(np.int32)
            if gt_sem is not None:
                gt_inst[~is_thing[gt_sem]] = 0
        m = read_png16(machine_files[i]) if i in machine_files else None
        return Frame(index=i, rgb=read_rgb(rgb_files[i]), T_world_cam=poses[i].copy(),
                     intrinsics=native, stamp_s=i / 30.0, depth_m=depth_of(i),
                     instance=None if m is None else m.astype(np.int32),
                     gt_semantic=gt_sem, gt_instance=gt_inst,
                     meta={"source": str(rgb_files[i])}).validate()

    def load(i: int) -> Frame:
        frame = load_native(i)
        if image_size is not None:
            frame = frame.resized(int(image_size[0]), int(image_size[1]))
        return frame

    train, test = split_train_test(len(ids), test_every)

    def seq(positions: list[int]) -> FrameSequence:
        return FrameSequence(len(positions), lambda k: load(ids[positions[k]]),
                             stamps=[ids[p] / 30.0 for p in positions])

    bounds = bounds_from_depth((depth_of(ids[k]), native, poses[ids[k]])
                               for k in evenly_spaced(len(ids), bounds_frames))
    return SceneDataset(name=name or root.name, train=seq(train), test=seq(test), classes=classes,
                        bounds=bounds, root=root,
                        meta={"format": "replica", "hfov_deg": None if K is not None else float(hfov_deg),
                              "class_map": "identity" if class_map is None else "given"})
