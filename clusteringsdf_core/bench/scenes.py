"""The scenes a benchmark runs on: opened from disk or generated (and cached), checked
for the GT they are scored against, and the GT scene mesh prepared for 3D metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clusteringsdf_core.bench.prediction import face_majority, gt_scene_labels
from clusteringsdf_core.data.dataset import SceneDataset

__all__ = ["GTScene", "load_gt_scene", "open_scenes", "synthetic_scenes", "scene_info",
           "enclosed_volume", "gt_object_volumes"]


@dataclass
class GTScene:
    """The GT scene mesh prepared for 3D evaluation (module docstring)."""

    mesh: object                       # trimesh.Trimesh, densified
    vertex_instance: np.ndarray        # (V,) int32, 0 = stuff / none
    vertex_semantic: np.ndarray        # (V,) int32
    instance_class: dict[int, int]     # GT object id -> class id
    max_edge_m: float


def load_gt_scene(dataset: SceneDataset, max_edge_m: float = 0.05) -> GTScene:
    """The GT scene mesh of ``dataset`` (``gt_scene_labels``) with its faces subdivided
    until no edge is longer than ``max_edge_m`` (0 = as stored); labels follow the
    faces. Raises ValueError when the dataset has no GT meshes."""
    import trimesh

    mesh, vertex_instance, vertex_semantic = gt_scene_labels(dataset)
    if max_edge_m > 0 and len(mesh.faces):
        faces = np.asarray(mesh.faces)
        face_instance = face_majority(faces, vertex_instance)
        face_semantic = face_majority(faces, vertex_semantic)
        try:
            vertices, new_faces, index = trimesh.remesh.subdivide_to_size(
                mesh.vertices, faces, max_edge=max_edge_m, max_iter=16, return_index=True)
        except ValueError:      # did not converge (degenerate faces): keep the stored mesh
            vertices = None
        if vertices is not None:
            new_faces = np.asarray(new_faces, dtype=np.int64)
            vertex_instance = np.zeros(len(vertices), np.int32)
            vertex_semantic = np.zeros(len(vertices), np.int32)
            for k in range(3):
                vertex_instance[new_faces[:, k]] = face_instance[index]
                vertex_semantic[new_faces[:, k]] = face_semantic[index]
            mesh = trimesh.Trimesh(vertices, new_faces, process=False)
    return GTScene(mesh, vertex_instance.astype(np.int32), vertex_semantic.astype(np.int32),
                   {int(o.id): int(o.class_id) for o in dataset.objects}, float(max_edge_m))


def enclosed_volume(mesh, pitch_m: float = 0.02, shifts: int = 8, seed: int = 0) -> float:
    """The volume (m^3) a mesh encloses, for meshes that are not watertight (GT furniture:
    overlapping parts, open seams, single-sided panels).

    The surface is voxelised at ``pitch_m``, which closes gaps smaller than a voxel, and
    the cavities it encloses are filled. A surface snaps to the voxels around it, so
    the filled voxels hold the solid plus a layer outside it whose thickness is, on
    average over where the grid falls, half the surface layer: ``0.5 * pitch * |n|_1``
    for a plane of unit normal n. That is subtracted for the surface on the solid's
    boundary (points sampled on the mesh whose voxel touches an empty one, diagonals included; faces
    inside the solid, where parts overlap, take nothing away; coplanar faces that
    overlap take it twice), and the estimate is
    averaged over ``shifts`` sub-voxel offsets of the grid, stratified along each axis
    (a Latin hypercube), since for one offset the layer varies by up to a voxel per
    side (which matters for thin plates: table tops, shelves). A part the voxels cannot close (a bowl, a lampshade) counts
    with its surface layer only."""
    from scipy.ndimage import binary_erosion

    if len(mesh.faces) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    count = int(np.clip(8.0 * mesh.area / pitch_m ** 2, 2000, 400_000))
    points, face = mesh.sample(count, return_index=True, seed=rng)
    weight = mesh.area / count * np.abs(np.asarray(mesh.face_normals)[face]).sum(axis=1)
    n = max(int(shifts), 1)
    strata = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(2)], axis=1)
    estimates = []
    for stratum in strata:
        offset = (stratum + rng.uniform(0.0, 1.0, 3)) / n * pitch_m
        shifted = mesh.copy()
        shifted.apply_translation(offset)
        filled = shifted.voxelized(float(pitch_m)).fill()
        solid = np.asarray(filled.matrix, bool)
        boundary = solid & ~binary_erosion(solid, np.ones((3, 3, 3), bool), border_value=0)
        index = np.asarray(filled.points_to_indices(points + offset))
        index = np.clip(index, 0, np.asarray(solid.shape) - 1)
        on_boundary = boundary[index[:, 0], index[:, 1], index[:, 2]]
        layer = 0.5 * pitch_m * float(weight[on_boundary].sum())
        estimates.append(float(solid.sum()) * pitch_m ** 3 - layer)
    return max(float(np.mean(estimates)), 0.0)


def gt_object_volumes(dataset: SceneDataset, pitch_m: float = 0.02, shifts: int = 8) -> dict[int, float]:
    """GT object id -> its volume (m^3, :func:`enclosed_volume`) from the scene's GT meshes
    ({} when it has none). Kept in ``<scene>/meshes/volumes.json`` (a minute or two per
    furniture scene), recomputed when the meshes or the estimate's settings change; a
    scene folder that cannot be written is measured anew each time."""
    paths = dataset.object_mesh_paths()
    if not paths:
        return {}
    cache = Path(next(iter(paths.values()))).parent / "volumes.json"
    key = {"pitch_m": float(pitch_m), "shifts": int(shifts),
           "meshes": {str(i): [Path(p).name, Path(p).stat().st_size] for i, p in sorted(paths.items())}}
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return {int(i): float(v) for i, v in stored["volumes"].items()}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    meshes, _ = dataset.load_gt_meshes()
    volumes = {int(i): enclosed_volume(m, pitch_m, shifts) for i, m in meshes.items()}
    try:
        tmp = cache.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"key": key, "volumes": {str(i): v for i, v in volumes.items()}}))
        tmp.replace(cache)
    except OSError:
        pass
    return volumes


def check_gt(dataset: SceneDataset, where: str) -> SceneDataset:
    frames = dataset.test if len(dataset.test) else dataset.train
    if not len(frames):
        raise ValueError(f"{where}: the scene has no frames")
    frame = frames[0]
    if frame.gt_instance is None or frame.gt_semantic is None:
        raise ValueError(f"{where}: the benchmark needs GT instance and semantic maps "
                         "(gt_instance / gt_semantic); this scene has none")
    if not len(dataset.test):
        raise ValueError(f"{where}: the scene has no held-out test frames")
    return dataset


def open_scenes(paths: Sequence[str | Path], **reader_options) -> list[SceneDataset]:
    """Open scenes in any format ``open_dataset`` reads (GT maps required)."""
    from clusteringsdf_core.data.formats import open_dataset

    return [check_gt(open_dataset(p, labels=None, **reader_options), str(p)) for p in paths]


def synthetic_scenes(seeds: Sequence[int], root: str | Path, *,
                     report: Callable[[str], None] = print, **config_fields) -> list[SceneDataset]:
    """Synthetic scenes of ``SyntheticSceneConfig(seed=s, **config_fields)``, generated
    into ``root/seed_<s>/`` (``root/seed_<s>_<layout>/`` for a layout other than the
    default, ``_s<scale>`` appended for a scale other than 1; with realistic simulated labels as variant ``sim``, like ``clusteringsdf
    scene``) or reused when a scene of the same config is already there."""
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.dataset import load_scene
    from clusteringsdf_core.data.synthetic import (LAYOUTS, SyntheticSceneConfig, generate_scene,
                                                   stored_config_matches, write_synthetic_scene)

    datasets = []
    for seed in seeds:
        config = SyntheticSceneConfig(seed=int(seed), **config_fields)
        layout = "" if config.layout == LAYOUTS[0] else f"_{config.layout}"
        scale = "" if config.scale == 1.0 else f"_s{config.scale:g}"
        folder = Path(root) / f"seed_{int(seed)}{layout}{scale}"
        meta_path = folder / "scene.json"
        stored = None
        if meta_path.exists():
            try:
                stored = json.loads(meta_path.read_text()).get("meta", {}).get("config")
            except (OSError, ValueError):
                stored = None
        if not stored_config_matches(stored, config):
            if stored is not None:
                report(f"{folder}: stored scene has another configuration; regenerating")
            t0 = time.perf_counter()
            scene = generate_scene(config)
            sim = segmenter_sim.realistic_preset()
            labelled = (segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=int(seed)),
                        segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=int(seed)))
            write_synthetic_scene(scene, folder, label_variant="sim", labelled_frames=labelled)
            report(f"generated scene seed {seed} ({scene.furniture_source} furniture, "
                   f"{len(scene.objects)} objects) into {folder} in {time.perf_counter() - t0:.1f} s")
        else:
            report(f"reusing scene seed {seed} in {folder}")
        datasets.append(check_gt(load_scene(folder, labels=None), str(folder)))
    return datasets


def scene_info(dataset: SceneDataset) -> dict:
    frame = dataset.test[0] if len(dataset.test) else dataset.train[0]
    info = {
        "name": dataset.name, "root": None if dataset.root is None else str(dataset.root),
        "format": dataset.meta.get("source_format", dataset.meta.get("generator", "")),
        "num_train": len(dataset.train), "num_test": len(dataset.test),
        "image_size": [frame.width, frame.height], "num_objects": len(dataset.objects),
        "num_classes": len(dataset.classes),
        "bounds": None if dataset.bounds is None else np.asarray(dataset.bounds).tolist(),
    }
    for key in ("config", "furniture", "room_size_m"):
        if key in dataset.meta:
            info[key] = dataset.meta[key]
    return info
