"""ScanNet: folders exported from ``.sens`` files (``.sens`` files themselves: :mod:`.sens`).

Export folder (ScanNet's ``SensReader/python/reader.py`` plus the unzipped 2D labels)::

    <scene>/color/<i>.jpg             colour, typically 1296x968
    <scene>/depth/<i>.png             uint16 depth, millimetres (depth_shift 1000), 640x480
    <scene>/pose/<i>.txt              4x4 camera-to-world; invalid frames hold -inf
    <scene>/intrinsic/intrinsic_color.txt, intrinsic_depth.txt   4x4, K in the top-left
    <scene>/label-filt/<i>.png        uint16 ScanNet label ids ("id" of the label tsv)
    <scene>/instance-filt/<i>.png     8-bit instance ids, consistent over the scene, 0 = none

Conventions, checked against ScanNet's reader (``SensorData.py``) and its users
(Panoptic Lifting's ``preprocess_scannet.py``): poses are camera-to-world of an
OpenCV-style camera (x right, y down, z forward); the world is the scan's own
frame, z-up (the reconstructed meshes stand on z = 0). We keep that world as is.
Intrinsic matrices (``intrinsic_*.txt`` and the ``.sens`` header) use the OpenCV
principal-point convention (pixel centres at integer coordinates); they are read
with :meth:`Intrinsics.from_opencv_K`, which adds 0.5 to cx and cy (the core puts
pixel centres at ``i + 0.5``). Resizing and the colour -> depth warp then work in
the core convention only.

**Image grid.** Colour and depth come from two cameras with (nearly) the same
centre and different intrinsics. Frames are produced on the *depth camera's* grid
(``intrinsic_depth`` at the depth image size, or at ``image_size`` if given): the
colour image and the 2D labels (which live on the colour camera) are warped into it
by :func:`~clusteringsdf_core.data.formats.common.warp_to_intrinsics` (area-averaged colour,
nearest labels). This is more exact than resizing colour 1296x968 -> 640x480, which
leaves a ~1% focal mismatch (a few pixels at the image border) with the depth. The
colour/depth extrinsics are ignored (identity in ScanNet's exports). Without depth
intrinsics the colour camera's grid is used.

**Labels.** ``label-filt`` ids are mapped ScanNet id -> NYU40 (``nyu40id`` column of
``scannetv2-labels.combined.tsv``, looked up next to the scene or in its parent, or
passed explicitly) -> :data:`SCANNET_REDUCED` by :data:`NYU40_TO_REDUCED`. Without the
tsv the pngs are assumed to hold NYU40 ids already (a warning says so). GT instance
ids on pixels whose class is stuff or void are set to 0 (the Frame convention: "0 =
none/stuff"). Machine instance labels (a segmenter's per-view ids) come from an
optional folder of ``<i>.png``; without it ``Frame.instance`` is None.

Stamps: ``.sens`` timestamps are microseconds (``stamp_s = timestamp_color * 1e-6``);
export folders have none, so ``stamp_s = i / 30`` (ScanNet records at 30 Hz).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.dataset import SceneDataset, read_png16, read_rgb
from clusteringsdf_core.data.frame import Frame, FrameSequence, Intrinsics, check_pose
from clusteringsdf_core.data.formats.common import (evenly_spaced, numeric_key, read_matrix,
                                                    resolve_optional_dir, split_train_test, strided,
                                                    warp_to_intrinsics)
from clusteringsdf_core.geometry.bounds import bounds_from_depth

__all__ = ["NYU40_NAMES", "NYU40_TO_REDUCED", "LABEL_TSV_NAME", "find_label_table",
           "read_label_table", "scannet_label_lut", "read_scannet_export", "SCANNET_FPS"]

SCANNET_FPS = 30.0
LABEL_TSV_NAME = "scannetv2-labels.combined.tsv"

#: NYU40 class names (public label set of Silberman et al., used by ScanNet's benchmark).
NYU40_NAMES: dict[int, str] = {
    1: "wall", 2: "floor", 3: "cabinet", 4: "bed", 5: "chair", 6: "sofa", 7: "table",
    8: "door", 9: "window", 10: "bookshelf", 11: "picture", 12: "counter", 13: "blinds",
    14: "desk", 15: "shelves", 16: "curtain", 17: "dresser", 18: "pillow", 19: "mirror",
    20: "floor mat", 21: "clothes", 22: "ceiling", 23: "books", 24: "refrigerator",
    25: "television", 26: "paper", 27: "towel", 28: "shower curtain", 29: "box",
    30: "whiteboard", 31: "person", 32: "night stand", 33: "toilet", 34: "sink", 35: "lamp",
    36: "bathtub", 37: "bag", 38: "otherstructure", 39: "otherfurniture", 40: "otherprop",
}

#: NYU40 id -> class name in SCANNET_REDUCED ("void" = dropped). Same-named classes map
#: to themselves. Merges: shelves -> bookshelf, floor mat -> floor, shower curtain ->
#: curtain (as Panoptic Lifting's reduction does); counter, dresser, night stand ->
#: otherfurniture (furniture without a class of its own in the table). Small props,
#: people and structure (blinds, pillow, mirror, clothes, books, paper, towel, box,
#: whiteboard, person, bag, otherstructure, otherprop) -> void, as ScanNet's 20-class
#: benchmark ignores them.
_NYU40_TO_REDUCED_NAME: dict[int, str] = {
    1: "wall", 2: "floor", 3: "cabinet", 4: "bed", 5: "chair", 6: "sofa", 7: "table",
    8: "door", 9: "window", 10: "bookshelf", 11: "picture", 12: "otherfurniture",
    13: "void", 14: "desk", 15: "bookshelf", 16: "curtain", 17: "otherfurniture",
    18: "void", 19: "void", 20: "floor", 21: "void", 22: "ceiling", 23: "void",
    24: "refrigerator", 25: "television", 26: "void", 27: "void", 28: "curtain", 29: "void",
    30: "void", 31: "void", 32: "otherfurniture", 33: "toilet", 34: "sink", 35: "lamp",
    36: "bathtub", 37: "void", 38: "void", 39: "otherfurniture", 40: "void",
}

#: NYU40 id -> SCANNET_REDUCED id (0 = void). See ``_NYU40_TO_REDUCED_NAME`` for the choices.
NYU40_TO_REDUCED: dict[int, int] = {k: SCANNET_REDUCED.id_of(v) for k, v in _NYU40_TO_REDUCED_NAME.items()}


# --------------------------------------------------------------------------- labels


def find_label_table(scene_dir: Path) -> Path | None:
    """``scannetv2-labels.combined.tsv`` in ``scene_dir`` or its parent, if there is one."""
    for d in (Path(scene_dir), Path(scene_dir).parent):
        if (d / LABEL_TSV_NAME).is_file():
            return d / LABEL_TSV_NAME
    return None


def read_label_table(path: str | Path) -> dict[int, int]:
    """ScanNet label id -> NYU40 id from the label tsv (columns ``id`` and ``nyu40id``).

    Rows with an empty ``nyu40id`` map to 0 (void).
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if not reader.fieldnames or not {"id", "nyu40id"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: label table needs columns 'id' and 'nyu40id', "
                             f"found {reader.fieldnames}")
        table = {}
        for row in reader:
            try:
                table[int(row["id"])] = int(row["nyu40id"]) if row["nyu40id"].strip() else 0
            except ValueError:
                raise ValueError(f"{path}: bad row {row}") from None
    return table


def scannet_label_lut(label_table: str | Path | None, classes: ClassTable = SCANNET_REDUCED,
                      nyu40_to_class: dict[int, int] | None = None) -> np.ndarray:
    """Lookup table: label png value -> class id in ``classes`` (values past its end are void).

    With ``label_table`` (the tsv) png values are ScanNet ids; without it they are
    taken to be NYU40 ids.
    """
    nyu = NYU40_TO_REDUCED if nyu40_to_class is None else nyu40_to_class
    to_class = lambda n: int(nyu.get(int(n), 0))  # noqa: E731
    if label_table is None:
        lut = np.zeros(41, dtype=np.int32)
        for n in range(41):
            lut[n] = to_class(n)
    else:
        table = read_label_table(label_table)
        lut = np.zeros(max(table, default=0) + 1, dtype=np.int32)
        for raw, n in table.items():
            if raw >= 0:
                lut[raw] = to_class(n)
    if lut.max(initial=0) >= len(classes):
        raise ValueError(f"class mapping produces ids >= {len(classes)} (size of the class table)")
    return lut


def _apply_lut(lut: np.ndarray, image: np.ndarray) -> np.ndarray:
    image = image.astype(np.int64)
    out = np.zeros(image.shape, dtype=np.int32)
    ok = (image >= 0) & (image < len(lut))
    out[ok] = lut[image[ok]]
    return out


# --------------------------------------------------------------------------- shared frame assembly


@dataclass
class Cameras:
    """The two ScanNet cameras and the output grid every frame is produced on."""

    color: Intrinsics
    depth: Intrinsics | None
    target: Intrinsics

    @classmethod
    def make(cls, color: Intrinsics, depth: Intrinsics | None,
             image_size: tuple[int, int] | None) -> "Cameras":
        base = depth if depth is not None else color
        target = base if image_size is None else base.scaled(int(image_size[0]), int(image_size[1]))
        return cls(color, depth, target)


@dataclass
class Labels:
    lut: np.ndarray
    is_thing: np.ndarray
    label_dir: Path | None
    instance_dir: Path | None
    machine_dir: Path | None


def labels_setup(root: Path, label_table, machine_instance_dir, classes: ClassTable,
                  label_dir: Path | None, instance_dir: Path | None) -> tuple[Labels, dict]:
    tsv = Path(label_table) if label_table is not None else find_label_table(root)
    if tsv is not None and not tsv.is_file():
        raise FileNotFoundError(f"label table {tsv} does not exist")
    meta = {}
    if label_dir is not None:
        if tsv is None:
            warnings.warn(f"{root}: no {LABEL_TSV_NAME} found (scene folder or its parent); "
                          "assuming label-filt pngs hold NYU40 ids", stacklevel=3)
            meta["gt_label_space"] = "nyu40 (assumed, no label tsv)"
        else:
            meta["gt_label_space"] = f"scannet ids via {tsv}"
    lut = scannet_label_lut(tsv, classes)
    machine = resolve_optional_dir(root, machine_instance_dir, "machine instance label")
    return Labels(lut, classes.is_thing_lut(), label_dir, instance_dir, machine), meta


def gt_and_machine(name: str, labels: Labels, cams: Cameras):
    """(gt_semantic, gt_instance, instance) for frame file stem ``name`` on the target grid."""

    def on_color_grid(folder: Path | None):
        if folder is None or not (folder / f"{name}.png").is_file():
            return None
        img = read_png16(folder / f"{name}.png")
        if img.ndim == 3:
            img = img[..., 0]
        return warp_to_intrinsics(img, cams.color, cams.target, nearest=True)

    sem_raw = on_color_grid(labels.label_dir)
    inst_raw = on_color_grid(labels.instance_dir)
    gt_sem = None if sem_raw is None else _apply_lut(labels.lut, sem_raw)
    gt_inst = None
    if inst_raw is not None:
        gt_inst = inst_raw.astype(np.int32)
        if gt_sem is not None:
            gt_inst[~labels.is_thing[gt_sem]] = 0
    machine = on_color_grid(labels.machine_dir)
    return gt_sem, gt_inst, None if machine is None else machine.astype(np.int32)


def valid_pose(T: np.ndarray) -> np.ndarray | None:
    try:
        return check_pose(T)
    except ValueError:
        return None


def assemble_dataset(name: str, root: Path, ids: list, load: Callable[[int], Frame], stamps: list[float],
             depth_sample: Callable[[int], tuple], *, test_every: int, bounds_frames: int,
             classes: ClassTable, meta: dict) -> SceneDataset:
    train, test = split_train_test(len(ids), test_every)

    def seq(positions):
        return FrameSequence(len(positions), lambda k: load(positions[k]),
                             stamps=[stamps[p] for p in positions])

    bounds = bounds_from_depth(depth_sample(p) for p in evenly_spaced(len(ids), bounds_frames))
    return SceneDataset(name=name, train=seq(train), test=seq(test), classes=classes,
                        bounds=bounds, root=root, meta=meta)


def skipped_warning(source: Path, skipped: list) -> None:
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} frame(s) with invalid (-inf/NaN or "
                      f"non-rigid) poses", stacklevel=3)


# --------------------------------------------------------------------------- export folders


def read_scannet_export(root: str | Path, *, label_table: str | Path | None = None,
                        machine_instance_dir: str | Path | None = None,
                        image_size: tuple[int, int] | None = None, stride: int = 1,
                        test_every: int = 8, depth_shift: float = 1000.0, bounds_frames: int = 16,
                        classes: ClassTable = SCANNET_REDUCED, name: str | None = None) -> SceneDataset:
    """Read a ScanNet export folder (see the module docstring for layout and choices).

    Frames are the numeric stems present in both ``color/`` and ``pose/``, in
    numeric order, every ``stride``-th kept; frames whose pose is invalid are
    skipped (a warning gives the count, ``meta["skipped_invalid_pose"]`` the ids).
    ``test_every``-th views go to the test split (:func:`split_train_test`).
    ``image_size`` = (width, height) of the output grid (default: the depth image's).
    ``Frame.index`` is the ScanNet frame number.
    """
    root = Path(root)
    for sub in ("color", "pose", "intrinsic"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root} is not a ScanNet export folder: missing {sub}/")
    color_stems = {p.stem for p in (root / "color").glob("*.jpg")}
    stems = sorted((p.stem for p in (root / "pose").glob("*.txt") if p.stem in color_stems),
                   key=numeric_key)
    stems = strided(stems, stride)
    if not stems:
        raise ValueError(f"{root}: no frames with both color/<i>.jpg and pose/<i>.txt")

    poses, kept, skipped = [], [], []
    for s in stems:
        T = valid_pose(read_matrix(root / "pose" / f"{s}.txt"))
        if T is None:
            skipped.append(s)
        else:
            kept.append(s)
            poses.append(T)
    skipped_warning(root, skipped)
    if not kept:
        raise ValueError(f"{root}: every frame has an invalid pose")

    color_path = root / "intrinsic" / "intrinsic_color.txt"
    if not color_path.is_file():
        raise FileNotFoundError(f"{root}: missing intrinsic/intrinsic_color.txt")
    first_rgb = read_rgb(root / "color" / f"{kept[0]}.jpg")
    K_color = Intrinsics.from_opencv_K(read_matrix(color_path)[:3, :3],
                                       first_rgb.shape[1], first_rgb.shape[0])
    K_depth = None
    first_depth = root / "depth" / f"{kept[0]}.png"
    if first_depth.is_file():
        dh, dw = read_png16(first_depth).shape[:2]
        depth_path = root / "intrinsic" / "intrinsic_depth.txt"
        K_depth = (Intrinsics.from_opencv_K(read_matrix(depth_path)[:3, :3], dw, dh)
                   if depth_path.is_file() else K_color.scaled(dw, dh))
    cams = Cameras.make(K_color, K_depth, image_size)
    label_dir = root / "label-filt" if (root / "label-filt").is_dir() else None
    instance_dir = root / "instance-filt" if (root / "instance-filt").is_dir() else None
    labels, label_meta = labels_setup(root, label_table, machine_instance_dir, classes,
                                       label_dir, instance_dir)

    def depth_of(stem: str) -> np.ndarray | None:
        p = root / "depth" / f"{stem}.png"
        if cams.depth is None or not p.is_file():
            return None
        d = warp_to_intrinsics(read_png16(p), cams.depth, cams.target, nearest=True)
        return d.astype(np.float32) / np.float32(depth_shift)

    def load(k: int) -> Frame:
        stem = kept[k]
        rgb = warp_to_intrinsics(read_rgb(root / "color" / f"{stem}.jpg"), cams.color, cams.target,
                                 nearest=False)
        gt_sem, gt_inst, inst = gt_and_machine(stem, labels, cams)
        return Frame(index=_frame_number(stem, k), rgb=rgb, T_world_cam=poses[k].copy(),
                     intrinsics=cams.target, stamp_s=stamps[k], depth_m=depth_of(stem),
                     instance=inst, gt_semantic=gt_sem, gt_instance=gt_inst,
                     meta={"source": str(root / "color" / f"{stem}.jpg")}).validate()

    stamps = [_frame_number(s, k) / SCANNET_FPS for k, s in enumerate(kept)]
    meta = {"format": "scannet-export", "skipped_invalid_pose": skipped,
            "image_grid": "depth camera" if cams.depth is not None else "colour camera", **label_meta}
    return assemble_dataset(name or root.name, root, kept, load, stamps,
                    lambda k: (depth_of(kept[k]), cams.target, poses[k]),
                    test_every=test_every, bounds_frames=bounds_frames, classes=classes, meta=meta)


def _frame_number(stem: str, position: int) -> int:
    return int(stem) if stem.isdigit() else position
