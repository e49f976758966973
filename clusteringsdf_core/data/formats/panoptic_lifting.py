"""Panoptic Lifting / Contrastive Lift preprocessed scenes (also what ClusteringSDF trains on).

Layout (from Panoptic Lifting's ``dataset/panopli.py`` and its preprocessing)::

    <scene>/color/<name>.jpg              colour; frame names sorted numerically
    <scene>/depth/<name>.png              uint16 depth, millimetres
    <scene>/pose/<name>.txt               4x4 camera-to-world (OpenCV-style camera:
                                          x right, y down, z forward; ScanNet's world)
    <scene>/intrinsic/intrinsic_color.txt 4x4, K of the colour images at their size
    <scene>/intrinsic/intrinsic_depth.txt optional; K of the depth images
    <scene>/splits.json                   {"train": [names], "test": [names]} ("val" when
                                          there is no "test")
    <scene>/m2f_semantics/<name>.png      machine (Mask2Former) class ids
    <scene>/m2f_instance/<name>.png       machine instance ids, NOT consistent across views
    <scene>/m2f_probabilities/<name>.npz  "probability" (H, W, C), optional "confidence" (H, W)
    <scene>/rs_semantics/<name>.png       GT class ids ("reduced ScanNet" classes)
    <scene>/rs_instance/<name>.png        GT instance ids, consistent, things only

Intrinsic files use the OpenCV principal-point convention (pixel centres at integer
coordinates); they are read with :meth:`Intrinsics.from_opencv_K` (cx, cy + 0.5).

Image grid: the colour camera's (``intrinsic_color`` at the colour image size, or
``image_size``). Depth is warped to it from ``intrinsic_depth`` when that file
exists, else assumed registered to the colour image and only resized (Panoptic
Lifting's own assumption). Labels and probabilities are on the colour grid.

Confidence: the npz's ``confidence`` (Panoptic Lifting's test-time-augmentation
confidence, what the ClusteringSDF paper weights L_sem with) when present,
otherwise the maximum class probability per pixel.

**Class space.** Panoptic Lifting's preprocessed scenes use *its own* 21-class
reduced ScanNet table (:data:`PANOPTIC_LIFTING_CLASSES`: wall, floor, cabinet, bed,
chair, sofa, table, door, window, counter, shelves, curtain, ceiling,
refrigerator, television, person, toilet, sink, lamp, bag, otherprop), which is NOT
:data:`SCANNET_REDUCED` although both have 21 classes plus void. By default
(``class_map=None``, ``classes=None``) the ids are read as ids of
:data:`PANOPTIC_LIFTING_CLASSES`, so names are right and numbers compare with the
papers'. ``class_map=PANOPTIC_LIFTING_TO_REDUCED`` maps them into
SCANNET_REDUCED instead (the table of our synthetic scenes); an explicit ``classes``
takes the ids as ids of that table unchanged.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable, SemanticClass
from clusteringsdf_core.data.dataset import SceneDataset, read_png16, read_rgb
from clusteringsdf_core.data.frame import Frame, FrameSequence, Intrinsics, check_pose
from clusteringsdf_core.data.formats.common import (class_lut, evenly_spaced, map_class_ids, numeric_key,
                                                    read_matrix, split_train_test, strided,
                                                    warp_to_intrinsics)
from clusteringsdf_core.geometry.bounds import bounds_from_depth

__all__ = ["PANOPTIC_LIFTING_CLASSES", "PANOPTIC_LIFTING_TO_REDUCED", "read_panoptic_lifting"]

_PL_CLASSES = (("wall", False), ("floor", False), ("cabinet", False), ("bed", True),
               ("chair", True), ("sofa", True), ("table", False), ("door", False),
               ("window", False), ("counter", False), ("shelves", False), ("curtain", False),
               ("ceiling", False), ("refrigerator", True), ("television", True),
               ("person", True), ("toilet", True), ("sink", True), ("lamp", False),
               ("bag", True), ("otherprop", False))

#: Panoptic Lifting's class table (``resources/scannet_reduced_things.csv``: order and
#: thing flags as they publish them), id 0 = void.
PANOPTIC_LIFTING_CLASSES = ClassTable(
    [SemanticClass(0, "void", False)]
    + [SemanticClass(i + 1, n, t) for i, (n, t) in enumerate(_PL_CLASSES)])

#: Panoptic Lifting id -> name in SCANNET_REDUCED. Same names map to themselves;
#: counter -> otherfurniture, shelves -> bookshelf; person, bag, otherprop -> void
#: (no such class in SCANNET_REDUCED).
_PL_TO_REDUCED_NAME = {
    "wall": "wall", "floor": "floor", "cabinet": "cabinet", "bed": "bed", "chair": "chair",
    "sofa": "sofa", "table": "table", "door": "door", "window": "window",
    "counter": "otherfurniture", "shelves": "bookshelf", "curtain": "curtain",
    "ceiling": "ceiling", "refrigerator": "refrigerator", "television": "television",
    "person": "void", "toilet": "toilet", "sink": "sink", "lamp": "lamp", "bag": "void",
    "otherprop": "void",
}

#: Panoptic Lifting class id -> SCANNET_REDUCED class id (0 = void).
PANOPTIC_LIFTING_TO_REDUCED: dict[int, int] = {
    PANOPTIC_LIFTING_CLASSES.id_of(a): SCANNET_REDUCED.id_of(b) for a, b in _PL_TO_REDUCED_NAME.items()}


def _frame_names(root: Path) -> list[str]:
    return sorted((p.stem for p in (root / "color").glob("*.jpg")), key=numeric_key)


def _splits(root: Path, names: list[str], stride: int, test_every: int) -> tuple[list[str], list[str], str]:
    path = root / "splits.json"
    if not path.is_file():
        train, test = split_train_test(len(strided(names, stride)), test_every)
        kept = strided(names, stride)
        return [kept[i] for i in train], [kept[i] for i in test], f"every {test_every}th view held out"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if "train" not in data or not ({"test", "val"} & set(data)):
        raise ValueError(f"{path}: needs a 'train' list and a 'test' (or 'val') list, has {sorted(data)}")
    known = set(names)
    out = []
    for key in ("train", "test" if "test" in data else "val"):
        listed = [str(x) for x in data[key]]
        missing = [x for x in listed if x not in known]
        if missing:
            raise ValueError(f"{path}: {key} frames {missing[:5]} have no color/<name>.jpg")
        out.append(strided(listed, stride))
    return out[0], out[1], str(path)


def read_panoptic_lifting(root: str | Path, *, labels: str | None = "m2f",
                          class_map: Mapping[int, int] | None = None,
                          classes: ClassTable | None = None,
                          image_size: tuple[int, int] | None = None, stride: int = 1,
                          depth_shift: float = 1000.0, test_every: int = 8,
                          bounds_frames: int = 16, name: str | None = None) -> SceneDataset:
    """Read a Panoptic Lifting scene (layout and class-space choices: module docstring).

    ``labels`` is the machine-label prefix (``m2f`` -> ``m2f_semantics/``,
    ``m2f_instance/``, ``m2f_probabilities/``); None loads none. Splits come from
    ``splits.json`` (each list strided by ``stride``), else every ``test_every``-th
    view is held out. Frames with an invalid pose are skipped with a warning.
    ``Frame.index`` is the frame name when numeric (else its position).
    """
    if classes is None:  # their own table unless ids are mapped into another one
        classes = PANOPTIC_LIFTING_CLASSES if class_map is None else SCANNET_REDUCED
    root = Path(root)
    for sub in ("color", "pose", "intrinsic"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root} is not a Panoptic Lifting scene: missing {sub}/")
    names = _frame_names(root)
    if not names:
        raise ValueError(f"{root}: no color/*.jpg frames")
    position = {n: i for i, n in enumerate(names)}
    train_names, test_names, split_source = _splits(root, names, stride, test_every)

    poses, skipped = {}, []
    for n in dict.fromkeys(train_names + test_names):
        p = root / "pose" / f"{n}.txt"
        if not p.is_file():
            raise FileNotFoundError(f"{root}: frame {n} has no pose/{n}.txt")
        try:
            poses[n] = check_pose(read_matrix(p))
        except ValueError:
            skipped.append(n)
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} frame(s) with invalid poses", stacklevel=2)
    train_names = [n for n in train_names if n in poses]
    test_names = [n for n in test_names if n in poses]

    first = read_rgb(root / "color" / f"{names[0]}.jpg")
    K_color = Intrinsics.from_opencv_K(read_matrix(root / "intrinsic" / "intrinsic_color.txt")[:3, :3],
                                       first.shape[1], first.shape[0])
    target = K_color if image_size is None else K_color.scaled(int(image_size[0]), int(image_size[1]))
    depth_K_path = root / "intrinsic" / "intrinsic_depth.txt"
    K_depth = read_matrix(depth_K_path)[:3, :3] if depth_K_path.is_file() else None  # at depth size
    lut = None if class_map is None else class_lut(class_map, classes)

    label_dirs = {}
    if labels is not None:
        label_dirs = {kind: root / f"{labels}_{kind}" for kind in ("semantics", "instance", "probabilities")}
        label_dirs = {k: d for k, d in label_dirs.items() if d.is_dir()}
        if not label_dirs:
            warnings.warn(f"{root}: no machine labels {labels}_semantics/, {labels}_instance/ or "
                          f"{labels}_probabilities/; Frame.instance stays empty", stacklevel=2)

    def depth_of(n: str) -> np.ndarray | None:
        p = root / "depth" / f"{n}.png"
        if not p.is_file():
            return None
        raw = read_png16(p)
        if K_depth is None:
            src = K_color.scaled(raw.shape[1], raw.shape[0])   # registered to colour
        else:
            src = Intrinsics.from_opencv_K(K_depth, raw.shape[1], raw.shape[0])
        return warp_to_intrinsics(raw, src, target, nearest=True).astype(np.float32) / np.float32(depth_shift)

    def png(folder: Path | None, n: str) -> np.ndarray | None:
        if folder is None or not (folder / f"{n}.png").is_file():
            return None
        img = read_png16(folder / f"{n}.png")
        return warp_to_intrinsics(img if img.ndim == 2 else img[..., 0], K_color, target, nearest=True)

    def confidence_of(n: str) -> np.ndarray | None:
        d = label_dirs.get("probabilities")
        if d is None or not (d / f"{n}.npz").is_file():
            return None
        with np.load(d / f"{n}.npz") as npz:
            if "confidence" in npz:
                conf = np.asarray(npz["confidence"], dtype=np.float32)
            elif "probability" in npz:
                conf = np.asarray(npz["probability"], dtype=np.float32).max(axis=-1)
            else:
                raise ValueError(f"{d / f'{n}.npz'}: has neither 'confidence' nor 'probability'")
        conf = warp_to_intrinsics(conf, K_color, target, nearest=False)
        return np.clip(conf, 0.0, 1.0).astype(np.float32)

    def load(n: str) -> Frame:
        where = f"{root}: frame {n}"
        sem = png(label_dirs.get("semantics"), n)
        gt_sem = png(root / "rs_semantics", n)
        inst, gt_inst = png(label_dirs.get("instance"), n), png(root / "rs_instance", n)
        rgb = warp_to_intrinsics(read_rgb(root / "color" / f"{n}.jpg"), K_color, target, nearest=False)
        return Frame(
            index=_number(n, position[n]), rgb=rgb, T_world_cam=poses[n].copy(), intrinsics=target,
            stamp_s=_number(n, position[n]) / 30.0, depth_m=depth_of(n),
            instance=None if inst is None else inst.astype(np.int32),
            semantic=None if sem is None else map_class_ids(sem, lut, classes, where),
            confidence=confidence_of(n),
            gt_instance=None if gt_inst is None else gt_inst.astype(np.int32),
            gt_semantic=None if gt_sem is None else map_class_ids(gt_sem, lut, classes, where),
            meta={"source": str(root / "color" / f"{n}.jpg"), "name": n}).validate()

    def seq(split_names: list[str]) -> FrameSequence:
        return FrameSequence(len(split_names), lambda k: load(split_names[k]),
                             stamps=[_number(n, position[n]) / 30.0 for n in split_names])

    every = sorted(set(train_names + test_names), key=numeric_key)
    bounds = bounds_from_depth((depth_of(every[k]), target, poses[every[k]])
                               for k in evenly_spaced(len(every), bounds_frames))
    return SceneDataset(
        name=name or root.name, train=seq(train_names), test=seq(test_names), classes=classes,
        bounds=bounds, root=root, label_variant=labels if label_dirs else "",
        meta={"format": "panoptic-lifting", "splits": split_source, "skipped_invalid_pose": skipped,
              "class_map": "identity" if class_map is None else "given"})


def _number(name: str, position: int) -> int:
    return int(name) if name.isdigit() else position
