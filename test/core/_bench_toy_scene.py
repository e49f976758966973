"""A tiny labelled scene for the bench / recon tests: a floor and three boxes.

Depth, GT instance and GT semantic maps are rendered by ray casting with the GT face
labels directly (not through ScenePrediction). Machine instance ids are the GT ids
permuted per view (a different cyclic shift in each view), so they are NOT consistent
across views; machine semantic labels equal the GT classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from clusteringsdf_core.data.classes import SCANNET_REDUCED
from clusteringsdf_core.data.dataset import GTObject, SceneDataset
from clusteringsdf_core.data.frame import Frame, Intrinsics

FLOOR = SCANNET_REDUCED.id_of("floor")
# (id, class name, extents xyz, centre xy); boxes stand on the floor (z = 0)
BOXES = [
    (1, "cabinet", (0.6, 0.6, 0.8), (-0.8, 0.5)),
    (2, "table", (0.5, 0.8, 0.5), (0.8, -0.4)),
    (3, "refrigerator", (0.4, 0.4, 1.0), (0.3, 1.1)),
]
BOUNDS = np.array([[-2.0, -2.0, -0.05], [2.0, 2.0, 1.1]])
COLOURS = {0: (120, 120, 120), 1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200)}


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world of an optical frame (x right, y down, z forward) at ``eye``
    looking at ``target``."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def scene_meshes():
    """(object id -> box mesh, floor mesh) in the world frame."""
    objects = {}
    for oid, _, ext, (x, y) in BOXES:
        box = trimesh.creation.box(extents=ext)
        box.apply_translation([x, y, ext[2] / 2.0])
        objects[oid] = box
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation([0.0, 0.0, -0.01])
    # subdivide so that the floor has vertices inside (a 2-triangle top is a poor GT mesh)
    floor = floor.subdivide_to_size(0.25)
    return objects, floor


def render(meshes_by_id: dict, intrinsics: Intrinsics, T_world_cam: np.ndarray):
    """(depth_m (H, W) float32, instance (H, W) int32) by ray casting, ids from faces."""
    ids = sorted(meshes_by_id)
    combined = trimesh.util.concatenate([meshes_by_id[i] for i in ids])
    face_id = np.concatenate([np.full(len(meshes_by_id[i].faces), i) for i in ids])
    u, v = np.meshgrid(np.arange(intrinsics.width) + 0.5, np.arange(intrinsics.height) + 0.5)
    d_cam = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                      np.ones_like(u)], -1).reshape(-1, 3)
    d_world = d_cam @ T_world_cam[:3, :3].T
    origins = np.broadcast_to(T_world_cam[:3, 3], d_world.shape)
    locs, rays, tri = RayMeshIntersector(combined).intersects_location(
        origins, d_world, multiple_hits=False)
    depth = np.zeros(len(d_cam), dtype=np.float32)
    inst = np.zeros(len(d_cam), dtype=np.int32)
    z = (locs - T_world_cam[:3, 3]) @ T_world_cam[:3, 2]
    depth[rays] = z
    inst[rays] = face_id[tri]
    shape = (intrinsics.height, intrinsics.width)
    return depth.reshape(shape), inst.reshape(shape)


def build_toy_scene(root: Path | None = None, *, n_views: int = 8, width: int = 160,
                    height: int = 120, consistent_ids: bool = False) -> SceneDataset:
    """The scene with ``n_views`` cameras on a circle; meshes written under ``root``
    (when given) so that ``load_gt_meshes`` works."""
    objects, floor = scene_meshes()
    class_of = {oid: SCANNET_REDUCED.id_of(name) for oid, name, _, _ in BOXES}
    K = Intrinsics.from_fov(width, height, 70.0)
    frames = []
    n_obj = len(BOXES)
    for k in range(n_views):
        a = 2 * np.pi * k / n_views + 0.3
        eye = (2.6 * np.cos(a), 2.6 * np.sin(a), 1.7)
        T = look_at(eye, (0.0, 0.2, 0.3))
        depth, gt_inst = render({0: floor, **objects}, K, T)
        gt_sem = np.where(gt_inst > 0, 0, FLOOR).astype(np.int32)
        for oid, c in class_of.items():
            gt_sem[gt_inst == oid] = c
        gt_sem[depth == 0] = 0
        shift = 0 if consistent_ids else k
        machine = np.where(gt_inst > 0, (gt_inst - 1 + shift) % n_obj + 1, 0).astype(np.int32)
        rgb = np.zeros((height, width, 3), dtype=np.uint8)
        for oid, col in COLOURS.items():
            rgb[(gt_inst == oid) & (depth > 0)] = col
        frames.append(Frame(index=k, rgb=rgb, T_world_cam=T, intrinsics=K, depth_m=depth,
                            instance=machine, semantic=gt_sem.copy(), gt_instance=gt_inst,
                            gt_semantic=gt_sem).validate())
    gt_objects = []
    for oid, name, _, _ in BOXES:
        mesh_file = ""
        if root is not None:
            mesh_file = f"meshes/object_{oid:04d}.ply"
            (Path(root) / "meshes").mkdir(parents=True, exist_ok=True)
            objects[oid].export(Path(root) / mesh_file)
        gt_objects.append(GTObject(id=oid, class_id=class_of[oid], name=name, mesh_file=mesh_file))
    if root is not None:
        floor.export(Path(root) / "meshes" / "stuff.ply")
    return SceneDataset(name="toy", train=frames[: max(1, n_views - 2)], test=frames[max(1, n_views - 2):],
                        bounds=BOUNDS, objects=gt_objects, root=Path(root) if root else None)
