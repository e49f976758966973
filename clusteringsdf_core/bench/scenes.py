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

__all__ = ["GTScene", "load_gt_scene", "open_scenes", "synthetic_scenes", "scene_info"]


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
    default; with realistic simulated labels as variant ``sim``, like ``clusteringsdf
    scene``) or reused when a scene of the same config is already there."""
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.dataset import load_scene
    from clusteringsdf_core.data.synthetic import (LAYOUTS, SyntheticSceneConfig, generate_scene,
                                                   stored_config_matches, write_synthetic_scene)

    datasets = []
    for seed in seeds:
        config = SyntheticSceneConfig(seed=int(seed), **config_fields)
        layout = "" if config.layout == LAYOUTS[0] else f"_{config.layout}"
        folder = Path(root) / f"seed_{int(seed)}{layout}"
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
