"""Generating a synthetic scene (deterministic for a seed) and writing it to disk."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import trimesh

from clusteringsdf_core.data.classes import SCANNET_REDUCED
from clusteringsdf_core.data.dataset import GTObject, SceneDataset, write_scene
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.data.synthetic.config import LAYOUTS, SyntheticScene, SyntheticSceneConfig
from clusteringsdf_core.data.synthetic.furniture import FurnitureLibrary, furniture_library
from clusteringsdf_core.data.synthetic.layout import place_objects, room_stuff, trajectory
from clusteringsdf_core.data.synthetic.renderer import build_renderer

__all__ = ["generate_scene", "write_synthetic_scene", "stored_config_matches"]

log = logging.getLogger(__name__)


def generate_scene(config: SyntheticSceneConfig = SyntheticSceneConfig(), *,
                   library: FurnitureLibrary | None = None,
                   progress: Callable[[int, int], None] | None = None) -> SyntheticScene:
    """Build and render a scene. ``progress(done, total)`` is called after each frame."""
    rng = np.random.default_rng(config.seed)
    classes = SCANNET_REDUCED
    library = library or furniture_library(config.furniture)
    w = float(rng.uniform(*config.room_width_range))
    d = float(rng.uniform(*config.room_depth_range))
    h = config.room_height
    objects, walk = place_objects(config, rng, library, w, d, classes)
    stuff = room_stuff(w, d, h, classes)
    if config.scale != 1.0:
        _scale_geometry(objects, stuff, config.scale)
    renderer = build_renderer(objects, stuff, rng, classes, length_scale=config.scale)
    if not renderer.uses_embree:
        log.warning("Embree is not available: ray casting falls back to trimesh's slow "
                    "pure-Python intersector (pip install embreex)")
    K = Intrinsics.from_fov(config.width, config.height, config.hfov_deg)
    inset = config.wall_clearance * 0.55
    train_poses = trajectory(rng, walk, config.num_train, inset, config.camera_height, 0.0, 0.1)
    test_poses = trajectory(rng, walk, config.num_test, inset * 1.3, config.camera_height - 0.2,
                             0.37, 0.25)
    for T in train_poses + test_poses:
        T[:3, 3] *= config.scale
    total = len(train_poses) + len(test_poses)
    frames: list[Frame] = []
    for i, T in enumerate(train_poses + test_poses):
        frame_rng = np.random.default_rng([config.seed, i])
        out = renderer.render(T, K, frame_rng, depth_noise=config.depth_noise, rgb_noise=config.rgb_noise)
        frames.append(Frame(index=i, rgb=out["rgb"], T_world_cam=T, intrinsics=K,
                            stamp_s=i / config.frame_rate_hz, depth_m=out["depth"],
                            gt_instance=out["instance"], gt_semantic=out["semantic"],
                            normal=out["normal"]))
        if progress:
            progress(i + 1, total)
    w, d, h = (config.scale * v for v in (w, d, h))
    bounds = np.array([[-w / 2, -d / 2, 0.0], [w / 2, d / 2, h]])
    gt_objects = [GTObject(id=o.instance_id, class_id=o.class_id, name=o.model.name,
                           mesh_file=f"meshes/object_{o.instance_id:04d}.ply", source=o.model.source)
                  for o in objects]
    dataset = SceneDataset(
        name=f"synthetic_seed{config.seed}" + ("" if config.layout == LAYOUTS[0] else f"_{config.layout}")
        + ("" if config.scale == 1.0 else f"_s{config.scale:g}"),
        train=frames[:len(train_poses)],
        test=frames[len(train_poses):], classes=classes, bounds=bounds, objects=gt_objects,
        meta={"generator": "clusteringsdf synthetic", "config": _jsonable(asdict(config)),
              "furniture": library.kind, "room_size_m": [w, d, h]})
    return SyntheticScene(config, np.array([w, d, h]), objects, stuff, dataset, library.kind)


def _scale_geometry(objects, stuff, factor: float) -> None:
    """Scale the placed objects and the room about the origin (the floor's centre) in place."""
    S = np.diag([factor, factor, factor, 1.0])
    for obj in objects:
        obj.T_world_obj = S @ obj.T_world_obj
        for mesh, _ in obj.parts_world:
            mesh.apply_scale(factor)
    for mesh, _ in stuff:
        mesh.apply_scale(factor)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def stored_config_matches(stored, config: SyntheticSceneConfig) -> bool:
    """Whether ``stored`` (``meta.config`` of a written scene) is ``config``; one written
    before the ``layout`` or ``scale`` field existed is of the default layout and scale."""
    return isinstance(stored, dict) and {"layout": LAYOUTS[0], "scale": 1.0, **stored} == _jsonable(asdict(config))


def write_synthetic_scene(scene: SyntheticScene, root: str | Path, *, label_variant: str = "sim",
                          labelled_frames: tuple[list[Frame], list[Frame]] | None = None) -> Path:
    """Write meshes and frames in the canonical layout. ``labelled_frames`` (train, test)
    replace the scene's frames when machine labels were added to them."""
    root = Path(root)
    (root / "meshes").mkdir(parents=True, exist_ok=True)
    for obj in scene.objects:
        obj.mesh().export(root / "meshes" / f"object_{obj.instance_id:04d}.ply")
    trimesh.util.concatenate([m for m, _ in scene.stuff]).export(root / "meshes" / "stuff.ply")
    dataset = scene.dataset
    if labelled_frames is not None:
        dataset = SceneDataset(**{**vars(dataset), "train": labelled_frames[0], "test": labelled_frames[1]})
    started = time.perf_counter()
    out = write_scene(root, dataset, label_variant=label_variant)
    log.info("wrote %s in %.1f s", root, time.perf_counter() - started)
    return out
