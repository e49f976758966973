"""What every method hands to the benchmark: a labelled scene, renderable into any view.

A :class:`ScenePrediction` is one method's answer for one scene:

- a reconstructed scene mesh in the world frame (or ``None`` for a method that
  renders its labels itself, e.g. a neural field, see ``renderer``);
- ``vertex_instance``: a predicted instance id per mesh vertex, 0 = none/stuff;
- ``instance_class`` / ``instance_score``: class id and confidence per instance id
  (3D AP ranks predictions by score; class-agnostic AP ignores the class);
- ``vertex_semantic``: optional class id per vertex (stuff and unlabelled vertices
  included); when absent it is derived from ``instance_class``;
- ``instance_solid``: for methods that give each object a solid (ClusteringSDF's
  closed object meshes), its volume in m^3 and whether its mesh is watertight, per
  instance id; scored against the GT objects' volumes.

2D metrics (PQ^scene, mIoU, EA) use :meth:`ScenePrediction.render_labels`, which
ray-casts the labelled mesh into a frame; 3D instance AP uses
:meth:`ScenePrediction.to_vertex_labels_on`, which transfers the labels onto the GT
mesh vertices. :func:`gt_scene_labels` builds the GT side of that comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.geometry.camera import world_rays

__all__ = ["ScenePrediction", "LabelRenderer", "gt_scene_labels",
           "face_majority", "STUFF_FLOOR_BAND_M", "STUFF_HORIZONTAL_NZ"]

#: A renderer gives (semantic (H, W) int32, instance (H, W) int32) for a frame.
LabelRenderer = Callable[[Frame], "tuple[np.ndarray, np.ndarray]"]

#: Geometric stuff labelling of a GT stuff mesh without per-vertex classes: vertices
#: within this height of the lowest (highest) stuff vertex whose normal is roughly
#: vertical (|n_z| >= STUFF_HORIZONTAL_NZ) are floor (ceiling); the rest is wall.
STUFF_FLOOR_BAND_M = 0.15
STUFF_HORIZONTAL_NZ = 0.5


def face_majority(faces: np.ndarray, vertex_labels: np.ndarray) -> np.ndarray:
    """(F,) label of each face: the label shared by at least two of its three vertices,
    else the label of its first vertex."""
    a, b, c = (vertex_labels[faces[:, i]] for i in range(3))
    return np.where(b == c, b, a).astype(np.int32)


@dataclass
class ScenePrediction:
    """One method's labelled scene (see the module docstring).

    Instance ids are arbitrary positive integers (0 = none/stuff); every id used in
    ``vertex_instance`` should have an entry in ``instance_class`` and ``instance_score``.
    """

    method: str
    mesh: "object | None"                                  # trimesh.Trimesh, world frame
    vertex_instance: np.ndarray | None                     # (V,) int32, 0 = none/stuff
    instance_class: dict[int, int] = field(default_factory=dict)
    instance_score: dict[int, float] = field(default_factory=dict)
    vertex_semantic: np.ndarray | None = None              # (V,) int32, 0 = void
    renderer: LabelRenderer | None = None                  # overrides mesh ray casting
    instance_solid: dict[int, tuple[float, bool]] = field(default_factory=dict)  # (m^3, watertight)
    meta: dict = field(default_factory=dict)               # timings, parameters, notes
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mesh is None and self.renderer is None:
            raise ValueError(f"{self.method}: a prediction needs a mesh or a renderer")
        if self.mesh is not None:
            n = len(self.mesh.vertices)
            if self.vertex_instance is None:
                raise ValueError(f"{self.method}: a mesh prediction needs vertex_instance")
            self.vertex_instance = np.asarray(self.vertex_instance, dtype=np.int32)
            if self.vertex_instance.shape != (n,):
                raise ValueError(f"{self.method}: vertex_instance has shape "
                                 f"{self.vertex_instance.shape}, mesh has {n} vertices")
            if self.vertex_semantic is not None:
                self.vertex_semantic = np.asarray(self.vertex_semantic, dtype=np.int32)
                if self.vertex_semantic.shape != (n,):
                    raise ValueError(f"{self.method}: vertex_semantic has shape "
                                     f"{self.vertex_semantic.shape}, mesh has {n} vertices")
        self.instance_class = {int(k): int(v) for k, v in self.instance_class.items()}
        self.instance_score = {int(k): float(v) for k, v in self.instance_score.items()}
        self.instance_solid = {int(k): (float(v), bool(w)) for k, (v, w) in self.instance_solid.items()}

    # ------------------------------------------------------------------ labels
    @property
    def instance_ids(self) -> list[int]:
        """The predicted instance ids (sorted, 0 excluded)."""
        if self.vertex_instance is not None:
            ids = np.unique(self.vertex_instance)
            return [int(i) for i in ids if i != 0]
        return sorted(i for i in self.instance_class if i != 0)

    def semantic_per_vertex(self) -> np.ndarray:
        """(V,) class id per vertex: ``vertex_semantic`` when given, else the class of
        the vertex's instance (0 for instance 0 and unknown ids)."""
        if self.vertex_semantic is not None:
            return self.vertex_semantic
        if self.vertex_instance is None:
            raise ValueError(f"{self.method}: no vertex labels")
        ids = self.vertex_instance
        lut = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int32)
        for i, c in self.instance_class.items():
            if 0 < i < len(lut):
                lut[i] = c
        return lut[ids]

    # ------------------------------------------------------------------ 2D
    def _intersector(self):
        if "rays" not in self._cache:
            from trimesh.ray.ray_pyembree import RayMeshIntersector

            faces = np.asarray(self.mesh.faces)
            self._cache["rays"] = RayMeshIntersector(self.mesh)
            self._cache["face_instance"] = face_majority(faces, self.vertex_instance)
            self._cache["face_semantic"] = face_majority(faces, self.semantic_per_vertex())
        return self._cache["rays"]

    def hit_faces(self, frame: Frame) -> np.ndarray:
        """(H, W) int64 index of the mesh face seen at each pixel centre, -1 for none."""
        rays = self._intersector()
        origins, dirs = world_rays(frame.intrinsics, frame.T_world_cam)
        faces = rays.intersects_first(origins, dirs)
        return np.asarray(faces, dtype=np.int64).reshape(frame.intrinsics.height,
                                                         frame.intrinsics.width)

    def render_labels(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(semantic (H, W) int32, instance (H, W) int32) seen from ``frame``'s camera.

        With a ``renderer`` that renderer answers; otherwise the mesh is ray-cast
        (embree) and each pixel takes the label of the first face hit (a face's label
        is the majority of its three vertex labels); pixels that hit nothing get 0.
        """
        if self.renderer is not None:
            semantic, instance = self.renderer(frame)
            return np.asarray(semantic, dtype=np.int32), np.asarray(instance, dtype=np.int32)
        face = self.hit_faces(frame)
        hit = face >= 0
        semantic = np.zeros(face.shape, dtype=np.int32)
        instance = np.zeros(face.shape, dtype=np.int32)
        semantic[hit] = self._cache["face_semantic"][face[hit]]
        instance[hit] = self._cache["face_instance"][face[hit]]
        return semantic, instance

    def render_labels_and_depth(self, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(semantic, instance, z-depth in metres) seen from ``frame``'s camera at its size;
        depth 0 where nothing is seen. A ``renderer`` must have ``labels_and_depth``
        (:class:`~clusteringsdf_core.evaluation.NeuralLabelRenderer` has); the mesh is
        ray-cast as in :meth:`render_labels`, with the distance to the first hit."""
        if self.renderer is not None:
            if not hasattr(self.renderer, "labels_and_depth"):
                raise TypeError(f"{self.method}: its renderer gives labels without depth")
            maps = self.renderer.labels_and_depth(frame)
            if maps[0].shape != (frame.height, frame.width):
                import cv2

                maps = [cv2.resize(np.asarray(m), (frame.width, frame.height), interpolation=cv2.INTER_NEAREST)
                        for m in maps]
            semantic, instance, depth = maps
            return (np.asarray(semantic, np.int32), np.asarray(instance, np.int32),
                    np.asarray(depth, np.float32))
        rays = self._intersector()
        origins, dirs = world_rays(frame.intrinsics, frame.T_world_cam)
        faces, index, points = rays.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
        shape = (frame.intrinsics.height, frame.intrinsics.width)
        semantic, instance = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        depth = np.zeros(shape, np.float32)
        faces, index = np.asarray(faces, np.int64), np.asarray(index, np.int64)
        forward = np.asarray(frame.T_world_cam, np.float64)[:3, 2]
        semantic.flat[index] = self._cache["face_semantic"][faces]
        instance.flat[index] = self._cache["face_instance"][faces]
        depth.flat[index] = (np.asarray(points) - origins[index]) @ forward
        return semantic, instance, depth

    # ------------------------------------------------------------------ 3D
    def to_vertex_labels_on(self, gt_vertices: np.ndarray,
                            max_distance_m: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """Transfer the labels onto other vertices (e.g. the GT mesh's) for 3D AP.

        Each of ``gt_vertices`` (N, 3) takes the (instance, semantic) labels of its
        nearest predicted vertex; vertices farther than ``max_distance_m`` from every
        predicted vertex get (0, 0). Returns two (N,) int32 arrays.
        """
        if self.mesh is None:
            raise ValueError(f"{self.method}: label transfer needs a mesh")
        gt_vertices = np.asarray(gt_vertices, dtype=np.float64).reshape(-1, 3)
        if "kdtree" not in self._cache:
            self._cache["kdtree"] = cKDTree(np.asarray(self.mesh.vertices, dtype=np.float64))
        instance = np.zeros(len(gt_vertices), dtype=np.int32)
        semantic = np.zeros(len(gt_vertices), dtype=np.int32)
        if len(gt_vertices) == 0 or len(self.mesh.vertices) == 0:
            return instance, semantic
        dist, idx = self._cache["kdtree"].query(gt_vertices, k=1,
                                                distance_upper_bound=float(max_distance_m))
        near = np.isfinite(dist)
        instance[near] = self.vertex_instance[idx[near]]
        semantic[near] = self.semantic_per_vertex()[idx[near]]
        return instance, semantic


# --------------------------------------------------------------------------- GT side


def _stuff_vertex_classes(stuff, classes) -> np.ndarray:
    """(V,) class id of each stuff vertex: a per-vertex class attribute when the mesh
    has one (``semantic``, ``class_id``, ``label`` or ``class``), else geometry:
    floor = roughly vertical normal within STUFF_FLOOR_BAND_M of the lowest vertex,
    ceiling = the same near the highest vertex, wall = everything else."""
    n = len(stuff.vertices)
    attrs = getattr(stuff, "vertex_attributes", {}) or {}
    for key in ("semantic", "class_id", "label", "class"):
        if key in attrs and len(attrs[key]) == n:
            return np.asarray(attrs[key]).reshape(n).astype(np.int32)

    def class_id(name: str) -> int:
        try:
            return classes.id_of(name)
        except KeyError:
            return 0

    z = np.asarray(stuff.vertices)[:, 2]
    out = np.full(n, class_id("wall"), dtype=np.int32)
    if n == 0:
        return out
    nz = np.abs(np.asarray(stuff.vertex_normals)[:, 2])
    horizontal = nz >= STUFF_HORIZONTAL_NZ
    out[horizontal & (z >= z.max() - STUFF_FLOOR_BAND_M)] = class_id("ceiling")
    out[horizontal & (z <= z.min() + STUFF_FLOOR_BAND_M)] = class_id("floor")
    return out


def gt_scene_labels(dataset) -> tuple[object, np.ndarray, np.ndarray]:
    """The GT scene as one labelled mesh: (trimesh.Trimesh, vertex_instance (V,) int32,
    vertex_semantic (V,) int32).

    Object meshes come first in ``dataset.objects`` order (instance = object id,
    semantic = its class id), then the stuff mesh (instance 0; semantic from a
    per-vertex class attribute or from geometry, see :func:`_stuff_vertex_classes`).
    Raises ValueError when the dataset has no GT meshes.
    """
    import trimesh

    object_meshes, stuff = dataset.load_gt_meshes()
    if not object_meshes and stuff is None:
        raise ValueError(f"scene {dataset.name!r} has no GT meshes")
    class_of = {o.id: o.class_id for o in dataset.objects}
    vertices, faces, instance, semantic = [], [], [], []
    offset = 0
    for obj in dataset.objects:
        mesh = object_meshes.get(obj.id)
        if mesh is None:
            continue
        v = np.asarray(mesh.vertices, dtype=np.float64)
        vertices.append(v)
        faces.append(np.asarray(mesh.faces, dtype=np.int64) + offset)
        instance.append(np.full(len(v), obj.id, dtype=np.int32))
        semantic.append(np.full(len(v), class_of[obj.id], dtype=np.int32))
        offset += len(v)
    if stuff is not None:
        v = np.asarray(stuff.vertices, dtype=np.float64)
        vertices.append(v)
        faces.append(np.asarray(stuff.faces, dtype=np.int64) + offset)
        instance.append(np.zeros(len(v), dtype=np.int32))
        semantic.append(_stuff_vertex_classes(stuff, dataset.classes))
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    return mesh, np.concatenate(instance), np.concatenate(semantic)
