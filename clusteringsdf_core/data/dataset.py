"""A scene dataset in memory, and the project's canonical on-disk layout.

Every reader (synthetic scenes, ScanNet exports and ``.sens`` files, Panoptic
Lifting scenes, Replica renders) returns a :class:`SceneDataset`. The canonical
layout below is what ``clusteringsdf scene`` writes and what the trainer and the
bag converter read::

    <scene>/
      scene.json                     format, name, class table, bounds, intrinsics,
                                     GT objects, frames (index, split, stamp, pose)
      rgb/000000.png                 8-bit RGB
      depth/000000.png               uint16 depth in millimetres, 0 = invalid
      gt_instance/000000.png         uint16 scene-consistent instance ids, 0 = none/stuff
      gt_semantic/000000.png         uint16 class ids of the class table, 0 = void
      labels/<variant>/instance/000000.png    uint16 machine instance ids (per view!)
      labels/<variant>/semantic/000000.png    uint16 machine class ids (optional)
      labels/<variant>/confidence/000000.png  uint16 confidence x 65535 (optional)
      meshes/object_0001.ply ...     GT mesh of each object (world frame, metres)
      meshes/stuff.ply               GT mesh of walls, floor, ceiling

Poses in ``scene.json`` are camera-to-world 4x4 matrices of the optical frame in
a z-up world (see :mod:`clusteringsdf_core.data.frame`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame, FrameSequence, Intrinsics

__all__ = ["GTObject", "SceneDataset", "load_scene", "write_scene", "FORMAT", "read_png16",
           "write_png16"]

FORMAT = "clusteringsdf-scene/1"


@dataclass
class GTObject:
    """A ground-truth object: its instance id in ``gt_instance`` maps, class, mesh."""

    id: int
    class_id: int
    name: str = ""
    mesh_file: str = ""          # relative to the scene root
    source: str = ""             # where the model came from (catalog id, "procedural", ...)


@dataclass
class SceneDataset:
    """Frames of one scene, split into training and held-out test views, plus GT."""

    name: str
    train: Sequence[Frame]
    test: Sequence[Frame]
    classes: ClassTable = SCANNET_REDUCED
    bounds: np.ndarray | None = None          # (2, 3) world AABB [min, max], metres
    objects: list[GTObject] = field(default_factory=list)
    root: Path | None = None
    label_variant: str = ""
    meta: dict = field(default_factory=dict)

    def object_mesh_paths(self) -> dict[int, Path]:
        if self.root is None:
            return {}
        return {o.id: self.root / o.mesh_file for o in self.objects if o.mesh_file}

    def load_gt_meshes(self):
        """(object id -> trimesh.Trimesh) of the GT objects, and the stuff mesh (or None)."""
        import trimesh

        meshes = {i: trimesh.load(p, force="mesh", process=False)
                  for i, p in self.object_mesh_paths().items()}
        stuff = None
        if self.root is not None and (self.root / "meshes" / "stuff.ply").exists():
            stuff = trimesh.load(self.root / "meshes" / "stuff.ply", force="mesh", process=False)
        return meshes, stuff


# --------------------------------------------------------------------------- PNG helpers


def write_png16(path: Path, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.min(initial=0) < 0 or image.max(initial=0) > 65535:
        raise ValueError(f"{path}: values outside uint16 range")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image.astype(np.uint16)):
        raise OSError(f"could not write {path}")


def read_png16(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- write / load


def write_scene(root: str | Path, dataset: SceneDataset, *, label_variant: str = "sim",
                extra_meta: dict | None = None) -> Path:
    """Write ``dataset`` in the canonical layout. Machine labels go to ``labels/<variant>``.

    Object meshes must already be in ``root/meshes`` (the scene generator writes them)
    or are left out.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    frames_meta = []
    intrinsics = None
    for split, frames in (("train", dataset.train), ("test", dataset.test)):
        for frame in frames:
            name = f"{frame.index:06d}.png"
            _write_rgb(root / "rgb" / name, frame.rgb)
            if frame.depth_m is not None:
                write_png16(root / "depth" / name, np.round(np.clip(frame.depth_m, 0, 65.535) * 1000.0))
            if frame.gt_instance is not None:
                write_png16(root / "gt_instance" / name, frame.gt_instance)
            if frame.gt_semantic is not None:
                write_png16(root / "gt_semantic" / name, frame.gt_semantic)
            labels = root / "labels" / label_variant
            if frame.instance is not None:
                write_png16(labels / "instance" / name, frame.instance)
            if frame.semantic is not None:
                write_png16(labels / "semantic" / name, frame.semantic)
            if frame.confidence is not None:
                write_png16(labels / "confidence" / name,
                            np.round(np.clip(frame.confidence, 0.0, 1.0) * 65535.0))
            if intrinsics is None:
                intrinsics = frame.intrinsics
            frames_meta.append({
                "index": frame.index, "split": split, "stamp_s": frame.stamp_s,
                "T_world_cam": np.asarray(frame.T_world_cam).round(9).tolist(),
                **({"intrinsics": frame.intrinsics.to_dict()} if frame.intrinsics != intrinsics else {}),
            })
    meta = {
        "format": FORMAT,
        "name": dataset.name,
        "classes": dataset.classes.to_list(),
        "bounds": None if dataset.bounds is None else np.asarray(dataset.bounds).round(6).tolist(),
        "intrinsics": intrinsics.to_dict() if intrinsics else None,
        "label_variants": sorted({p.name for p in (root / "labels").glob("*") if p.is_dir()}),
        "objects": [vars(o) for o in dataset.objects],
        "frames": frames_meta,
        "meta": {**dataset.meta, **(extra_meta or {})},
    }
    (root / "scene.json").write_text(json.dumps(meta, indent=1))
    return root


def load_scene(root: str | Path, *, labels: str | None = "sim") -> SceneDataset:
    """Read a scene in the canonical layout; frames load lazily from disk.

    ``labels`` names the machine-label variant put in ``Frame.instance`` (and
    ``semantic``/``confidence`` when present); ``None`` leaves them empty.
    """
    root = Path(root)
    meta_path = root / "scene.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{root} is not a scene folder (no scene.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r} (expected {FORMAT})")
    if labels is not None and labels not in meta.get("label_variants", []):
        raise ValueError(f"{root}: no label variant {labels!r}; available: {meta.get('label_variants')}")
    default_K = Intrinsics.from_dict(meta["intrinsics"]) if meta.get("intrinsics") else None

    def make_loader(entries):
        def load(i: int) -> Frame:
            e = entries[i]
            name = f"{e['index']:06d}.png"

            def optional(sub: str):
                p = root / sub / name
                return read_png16(p) if p.exists() else None

            depth = optional("depth")
            inst = sem = conf = None
            if labels is not None:
                inst = optional(f"labels/{labels}/instance")
                sem = optional(f"labels/{labels}/semantic")
                conf = optional(f"labels/{labels}/confidence")
            gt_i, gt_s = optional("gt_instance"), optional("gt_semantic")
            K = Intrinsics.from_dict(e["intrinsics"]) if "intrinsics" in e else default_K
            return Frame(
                index=int(e["index"]), rgb=read_rgb(root / "rgb" / name),
                T_world_cam=np.array(e["T_world_cam"], dtype=np.float64), intrinsics=K,
                stamp_s=float(e.get("stamp_s", 0.0)),
                depth_m=None if depth is None else depth.astype(np.float32) / 1000.0,
                instance=None if inst is None else inst.astype(np.int32),
                semantic=None if sem is None else sem.astype(np.int32),
                confidence=None if conf is None else conf.astype(np.float32) / 65535.0,
                gt_instance=None if gt_i is None else gt_i.astype(np.int32),
                gt_semantic=None if gt_s is None else gt_s.astype(np.int32),
            )
        return load

    splits = {}
    for split in ("train", "test"):
        entries = [e for e in meta["frames"] if e["split"] == split]
        splits[split] = FrameSequence(len(entries), make_loader(entries),
                                      stamps=[e.get("stamp_s", 0.0) for e in entries])
    return SceneDataset(
        name=meta["name"], train=splits["train"], test=splits["test"],
        classes=ClassTable.from_list(meta["classes"]),
        bounds=None if meta.get("bounds") is None else np.array(meta["bounds"], dtype=np.float64),
        objects=[GTObject(**o) for o in meta.get("objects", [])],
        root=root, label_variant=labels or "", meta=meta.get("meta", {}),
    )
