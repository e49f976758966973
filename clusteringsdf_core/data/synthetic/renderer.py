"""Ray casting a labelled, coloured triangle soup into RGB-D frames with GT maps."""

from __future__ import annotations

import numpy as np
import trimesh

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.synthetic.config import PlacedObject
from clusteringsdf_core.geometry.camera import world_rays

__all__ = ["SceneRenderer", "build_renderer"]


class SceneRenderer:
    """Ray-casts a labelled, coloured triangle soup (Embree when installed)."""

    def __init__(self, mesh: trimesh.Trimesh, face_instance: np.ndarray, face_semantic: np.ndarray,
                 face_albedo: np.ndarray, face_pattern: np.ndarray, length_scale: float = 1.0):
        self.mesh = mesh
        self.length_scale = float(length_scale)
        self.face_instance = face_instance.astype(np.int32)
        self.face_semantic = face_semantic.astype(np.int32)
        self.face_albedo = face_albedo.astype(np.float32)
        self.face_pattern = face_pattern.astype(np.float32)   # (F, 4): direction xyz, frequency
        self.face_normals = np.asarray(mesh.face_normals, dtype=np.float32)
        self.intersector = mesh.ray  # ray_pyembree when embreex is importable

    @property
    def uses_embree(self) -> bool:
        return "embree" in type(self.intersector).__module__

    def render(self, T_world_cam: np.ndarray, K: Intrinsics, rng: np.random.Generator | None = None,
               depth_noise: bool = False, rgb_noise: float = 0.0) -> dict[str, np.ndarray]:
        h, w = K.height, K.width
        origins, dirs_unit = world_rays(K, T_world_cam)
        R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
        tri, ray, loc = self.intersector.intersects_id(origins, dirs_unit, multiple_hits=False,
                                                       return_locations=True)
        n = h * w
        depth = np.zeros(n, np.float32)
        inst = np.zeros(n, np.int32)
        sem = np.zeros(n, np.int32)
        rgb = np.zeros((n, 3), np.float32)
        normal_cam = np.zeros((n, 3), np.float32)
        if len(ray):
            depth[ray] = ((loc - t) @ R[:, 2]).astype(np.float32)
            inst[ray] = self.face_instance[tri]
            sem[ray] = self.face_semantic[tri]
            nrm = self.face_normals[tri]
            view = dirs_unit[ray].astype(np.float32)
            facing = np.sign(-(nrm * view).sum(1, keepdims=True))
            nrm = nrm * np.where(facing == 0, 1, facing)
            cos_view = np.clip(-(nrm * view).sum(1), 0, 1)
            sun = np.array([0.3, 0.5, 0.81], np.float32)
            sun /= np.linalg.norm(sun)
            shade = 0.35 + 0.4 * np.clip(nrm @ sun, 0, 1) + 0.35 * cos_view
            pattern = self.face_pattern[tri]
            stripes = 1.0 + 0.12 * np.sin(pattern[:, 3] * (loc * pattern[:, :3]).sum(1) / self.length_scale)
            rgb[ray] = self.face_albedo[tri] * (shade * stripes)[:, None]
            normal_cam[ray] = nrm @ R
            if depth_noise and rng is not None:
                z = depth[ray]
                sigma = 0.0012 + 0.0019 * np.square(np.maximum(z - 0.4, 0))
                noisy = z + rng.normal(0, 1, z.shape).astype(np.float32) * sigma
                noisy[cos_view < 0.12] = 0.0                       # grazing angles: no return
                depth[ray] = np.maximum(noisy, 0)
        rgb8 = rgb * 255.0
        if rgb_noise > 0 and rng is not None:
            rgb8 = rgb8 + rng.normal(0, rgb_noise, rgb8.shape)
        return {
            "rgb": np.clip(rgb8, 0, 255).astype(np.uint8).reshape(h, w, 3),
            "depth": depth.reshape(h, w),
            "instance": inst.reshape(h, w),
            "semantic": sem.reshape(h, w),
            "normal": normal_cam.reshape(h, w, 3),
        }


def build_renderer(objects: list[PlacedObject], stuff, rng: np.random.Generator,
                    classes: ClassTable, length_scale: float = 1.0) -> SceneRenderer:
    """A renderer of the placed objects and the room; ``length_scale``: the factor the
    geometry was scaled by (the textures' stripes scale with it)."""
    meshes, inst, sem, albedo, pattern = [], [], [], [], []

    def add(mesh, instance_id, class_id, colour, pat):
        f = len(mesh.faces)
        meshes.append(mesh)
        inst.append(np.full(f, instance_id))
        sem.append(np.full(f, class_id))
        albedo.append(np.tile(colour, (f, 1)))
        pattern.append(np.tile(pat, (f, 1)))

    def random_pattern(freq_range):
        direction = rng.normal(size=3)
        return np.array([*direction / np.linalg.norm(direction), rng.uniform(*freq_range)])

    stuff_colours = {"floor": np.array([0.62, 0.5, 0.38]), "wall": np.array([0.85, 0.83, 0.78]),
                     "ceiling": np.array([0.93, 0.93, 0.93])}
    for mesh, class_id in stuff:
        name = classes.name_of(class_id)
        colour = np.clip(stuff_colours[name] + rng.normal(0, 0.04, 3), 0, 1)
        add(mesh, 0, class_id, colour, random_pattern((8.0, 14.0)))
    for obj in objects:
        pat = random_pattern((15.0, 40.0))
        for mesh, colour in obj.parts_world:
            add(mesh, obj.instance_id, obj.class_id, colour, pat)
    scene = trimesh.util.concatenate(meshes)
    return SceneRenderer(scene, np.concatenate(inst), np.concatenate(sem), np.concatenate(albedo),
                         np.concatenate(pattern), length_scale=length_scale)
