"""From a trained model to objects: meshes per channel, boxes, classes.

:func:`extract_objects` evaluates the SDF channels on a grid over the scene
bounds, runs marching cubes once on the scene SDF (the minimum over channels) and
splits its faces by the channel that is smallest at each face (channel 0, the
background, gives the room): each object's *shell*, the visible surface it owns. It
removes small disconnected fragments and drops channels with too little surface;
optionally each channel's spatially separate parts become objects of their own.

Each object's mesh (``extract.object_mesh = "closed"``) is the boundary of its
solid: the grid cells inside the scene surface (negative scene SDF) where its
channel's SDF is the smallest, meshed by marching cubes of
``f_k = max(d_k, d_k - min_{j != k} d_j)`` on a sub-grid around those cells. That
is the shell plus the contact faces where the object meets another channel's solid
(the floor under a chair's legs, the wall behind a bookcase, the table under a
lamp), so it is watertight wherever the solid stays inside the grid, and its
volume is the mesh's. ``d_k < 0`` alone would not do for the shared-geometry
parametrisation (``d_k = s + offset_k``): where another channel owns the solid
nothing trains channel k's offset, so its zero level can wander into the floor or
a neighbour; intersecting with ownership keeps objects from interpenetrating.

Each object gets its centroid, a gravity-aligned oriented bounding box (yaw only:
what a planner expects of furniture standing on a floor), its volume and a
semantic class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import trimesh
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from clusteringsdf_core.config import ExtractConfig
from clusteringsdf_core.model.scene_model import ClusteringSDFModel
from clusteringsdf_core.training.class_votes import ClassVotes

__all__ = ["ExtractedObject", "extract_objects", "channel_parts", "channel_solid", "sdf_grid",
           "oriented_box_upright", "box_iou_3d"]


@dataclass
class ExtractedObject:
    channel: int
    mesh: trimesh.Trimesh                  # world frame, metres
    class_id: int
    confidence: float
    centroid: np.ndarray                   # (3,)
    box_pose: np.ndarray                   # (4, 4) box centre and orientation (yaw only)
    box_size: np.ndarray                   # (3,) full edge lengths along the box axes
    volume: float                          # m^3: of the closed mesh when watertight, else of the
                                           # grid cells of the object's solid
    #: which of its channel's spatially separate parts this object is (0 when the
    #: channel is one object: ``extract.split_channels`` off, or one part only)
    part: int = 0
    #: the channel's number of channels (instance ids of parts are channel + part * it)
    num_channels: int = 0
    #: the visible scene surface the object owns (None: ``mesh`` is that surface)
    shell: trimesh.Trimesh | None = None
    #: every connected piece of ``mesh`` is closed (each edge shared by two faces)
    watertight: bool = False

    @property
    def aabb(self) -> np.ndarray:
        return self.mesh.bounds

    @property
    def surface(self) -> trimesh.Trimesh:
        """The visible surface the object owns: what rendering, the scene mesh and the
        3D metrics see (``mesh`` itself in shell mode)."""
        return self.shell if self.shell is not None else self.mesh

    @property
    def instance_id(self) -> int:
        """A positive id per object of one extraction: the channel for part 0, and
        ``channel + part * num_channels`` for the further parts of a split channel."""
        return int(self.channel + self.part * self.num_channels)


def oriented_box_upright(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gravity-aligned oriented box of points (z-up): min-area rectangle of the xy
    footprint, z from the extent. Returns (pose 4x4, size (3,))."""
    xy = np.ascontiguousarray(vertices[:, :2], dtype=np.float32)
    (cx, cy), (w, d), angle = cv2.minAreaRect(xy)
    z0, z1 = float(vertices[:, 2].min()), float(vertices[:, 2].max())
    yaw = np.radians(angle)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    pose[:3, 3] = [cx, cy, (z0 + z1) / 2]
    return pose, np.array([w, d, z1 - z0])


def box_iou_3d(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two axis-aligned boxes given as (2, 3) [min, max]."""
    lo, hi = np.maximum(a[0], b[0]), np.minimum(a[1], b[1])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    va, vb = float(np.prod(a[1] - a[0])), float(np.prod(b[1] - b[0]))
    return inter / max(va + vb - inter, 1e-12)


@torch.no_grad()
def sdf_grid(model: ClusteringSDFModel, resolution: int, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, list]:
    """Scene SDF and owning channel on a grid over the scene box.

    Returns (scene SDF (nx, ny, nz) float32 in metres, argmin channel (nx, ny, nz) int16,
    axis coordinates in normalised units). ``resolution`` cells span the normalisation
    frame's longest side (a grown map gets more cells, not coarser ones);
    memory stays at a few bytes per cell whatever the number of channels.
    """
    lo, hi = model.domain_lo.detach().cpu().numpy(), model.domain_hi.detach().cpu().numpy()
    step = 2.0 / resolution
    axes = [np.arange(a, b + 1e-9, step, dtype=np.float32) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    device = next(model.parameters()).device
    scene = np.empty(grid.shape[0], np.float32)
    owner = np.empty(grid.shape[0], np.int16)
    for start in range(0, grid.shape[0], chunk):
        sdf = model.sdf_net.sdf(torch.as_tensor(grid[start:start + chunk], device=device))
        value, index = sdf.min(dim=-1)
        scene[start:start + chunk] = value.float().cpu().numpy()
        owner[start:start + chunk] = index.cpu().numpy()
    shape = tuple(len(a) for a in axes)
    return scene.reshape(shape) * model.box.scale, owner.reshape(shape), axes


@torch.no_grad()
def _owner_at(model: ClusteringSDFModel, points_world: np.ndarray, chunk: int = 65536) -> np.ndarray:
    device = next(model.parameters()).device
    out = np.empty(len(points_world), np.int64)
    for start in range(0, len(points_world), chunk):
        x = model.box.to_normalised(torch.as_tensor(np.array(points_world[start:start + chunk], np.float32),
                                                    device=device))
        out[start:start + chunk] = model.sdf_net.sdf(x).argmin(dim=-1).cpu().numpy()
    return out


def box_distance(points: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
    """(N,) signed distance-like value of world points to a union of axis-aligned boxes
    ((2, 3) [min, max] each): negative inside one, the largest axis overshoot outside."""
    points = np.asarray(points, np.float64)
    d = np.full(len(points), np.inf)
    for box in boxes:
        d = np.minimum(d, np.maximum(box[0] - points, points - box[1]).max(axis=1))
    return d


@torch.no_grad()
def channel_solid(model: ClusteringSDFModel, k: int, inside: np.ndarray, axes: list, *,
                  boxes: list[np.ndarray] | None = None, chunk: int = 65536) -> trimesh.Trimesh | None:
    """The closed surface of channel ``k``'s solid, world frame (None when it has no cells).

    ``inside`` (grid shape of :func:`sdf_grid`) marks the cells of the solid (scene SDF
    < 0, channel ``k`` the smallest). ``f_k = max(d_k, d_k - min_{j != k} d_j)`` is
    evaluated on the sub-grid around them, padded with one cell outside the solid on
    every side, and meshed at its zero level: the result is closed except where
    marching cubes itself leaves a defect. With ``boxes`` (world [min, max] of the
    surface the channel owns, one per part) the solid is cut at them too
    (:func:`box_distance`): below a floor or behind a wall no ray says who owns the
    interior, and the object's channel often does there."""
    cells = np.argwhere(inside)
    if len(cells) == 0:
        return None
    lo = np.maximum(cells.min(axis=0) - 1, 0)
    hi = np.minimum(cells.max(axis=0) + 2, [len(a) for a in axes])
    sub = [a[l:h] for a, l, h in zip(axes, lo, hi)]
    grid = np.stack(np.meshgrid(*sub, indexing="ij"), axis=-1).reshape(-1, 3)
    device = next(model.parameters()).device
    values = np.empty(len(grid), np.float32)
    for start in range(0, len(grid), chunk):
        sdf = model.sdf_net.sdf(torch.as_tensor(grid[start:start + chunk], device=device))
        own = sdf[:, k]
        others = torch.cat([sdf[:, :k], sdf[:, k + 1:]], dim=1).min(dim=1).values
        values[start:start + chunk] = torch.maximum(own, own - others).float().cpu().numpy()
    spacing = tuple(float(a[1] - a[0]) * model.box.scale if len(a) > 1 else 1.0 for a in axes)
    field_m = values * model.box.scale
    if boxes:
        field_m = np.maximum(field_m, box_distance(model.box.to_world(grid), boxes))
    field_m = field_m.reshape(tuple(len(a) for a in sub))
    # one cell of "outside" around the sub-grid closes a solid cut by the grid's edge
    field_m = np.pad(field_m, 1, constant_values=max(spacing))
    if field_m.min() >= 0:
        return None
    verts, faces, _, _ = marching_cubes(field_m, level=0.0, spacing=spacing)
    origin = model.box.to_world(np.array([a[0] for a in sub])) - np.asarray(spacing)
    return trimesh.Trimesh(verts + origin, faces, process=True)


def _closed_parts(solid: trimesh.Trimesh | None, shells: list[trimesh.Trimesh],
                  min_component_faces: int) -> list[list[trimesh.Trimesh]]:
    """The pieces of a channel's closed ``solid`` that belong to each of its shell parts:
    a piece goes to the part holding most of its vertices' nearest shell vertices;
    pieces below ``min_component_faces`` faces are dropped like shell fragments."""
    out: list[list[trimesh.Trimesh]] = [[] for _ in shells]
    if solid is None or len(solid.faces) == 0:
        return out
    pieces = [c for c in solid.split(only_watertight=False) if len(c.faces) >= min_component_faces]
    if len(shells) == 1:
        out[0] = pieces
        return out
    vertex_part = np.concatenate([np.full(len(m.vertices), i) for i, m in enumerate(shells)])
    tree = cKDTree(np.concatenate([np.asarray(m.vertices) for m in shells]))
    for piece in pieces:
        nearest = vertex_part[tree.query(np.asarray(piece.vertices))[1]]
        out[int(np.bincount(nearest, minlength=len(shells)).argmax())].append(piece)
    return out


def channel_parts(mesh: trimesh.Trimesh, min_component_faces: int, min_object_faces: int,
                  gap_m: float | None) -> list[trimesh.Trimesh]:
    """The object meshes of one channel's faces, largest first ([] when too small).

    Connected components with fewer than ``min_component_faces`` faces are dropped.
    With ``gap_m`` None the rest is one object; otherwise components whose vertices
    come within ``gap_m`` of each other are one part (single linkage), and a part
    below ``min_object_faces`` joins the nearest larger part."""
    comps = [c for c in mesh.split(only_watertight=False) if len(c.faces) >= min_component_faces]
    if sum(len(c.faces) for c in comps) < max(min_object_faces, 1):
        return []
    if gap_m is None or len(comps) == 1:
        return [trimesh.util.concatenate(comps) if len(comps) > 1 else comps[0]]
    trees = [cKDTree(np.asarray(c.vertices)) for c in comps]
    n = len(comps)
    gap = np.zeros((n, n))               # closest vertices of two components, metres
    for i in range(n):
        for j in range(i + 1, n):
            gap[i, j] = gap[j, i] = trees[i].query(np.asarray(comps[j].vertices))[0].min()
    _, label = connected_components(gap <= gap_m, directed=False)
    groups = [list(np.flatnonzero(label == g)) for g in range(label.max() + 1)]
    faces = [sum(len(comps[i].faces) for i in g) for g in groups]
    large = [g for g, f in zip(groups, faces) if f >= min_object_faces]
    if not large:
        return [trimesh.util.concatenate(comps)]
    for g, f in zip(groups, faces):
        if f < min_object_faces:
            min(large, key=lambda h: gap[np.ix_(g, h)].min()).extend(g)
    meshes = [trimesh.util.concatenate([comps[i] for i in g]) if len(g) > 1 else comps[g[0]] for g in large]
    return sorted(meshes, key=lambda m: -len(m.faces))


def extract_objects(model: ClusteringSDFModel, config: ExtractConfig, channel_classes: np.ndarray,
                    channel_confidence: np.ndarray, *, include_background: bool = False,
                    resolution: int | None = None,
                    class_votes: ClassVotes | None = None) -> list[ExtractedObject]:
    """One object per channel that owns enough of the scene surface (with
    ``config.split_channels``: per spatially separate part of it, :func:`channel_parts`,
    each part named by ``class_votes`` where they have votes for it).

    The scene surface (zero level of min_k d_k, marching cubes) is split by the
    channel that is smallest at each face: what is rendered as channel k is what
    becomes object k's shell, for either SDF parametrisation. With
    ``config.object_mesh == "closed"`` each object's mesh is its solid's closed surface
    (:func:`channel_solid`; the background channel keeps its shell: the room is not an
    object) and its volume the mesh's where every piece is watertight; otherwise, and
    in shell mode, the volume is that of the grid cells of the solid.
    """
    resolution = resolution or config.resolution
    # Face counts grow with the square of the resolution: keep the thresholds' meaning.
    face_scale = (resolution / config.resolution) ** 2
    min_component = int(round(config.min_component_faces * face_scale))
    min_object = max(int(round(config.min_object_faces * face_scale)), 1)
    scene, owner, axes = sdf_grid(model, resolution)
    spacing = tuple(float(a[1] - a[0]) * model.box.scale if len(a) > 1 else 1.0 for a in axes)
    origin = model.box.to_world(np.array([a[0] for a in axes]))
    if scene.min() >= 0 or scene.max() <= 0:
        return []
    verts, faces, _, _ = marching_cubes(scene, level=0.0, spacing=spacing)
    # Faces come out oriented towards increasing values: outwards for an SDF.
    surface = trimesh.Trimesh(verts + origin, faces, process=True)
    face_owner = _owner_at(model, np.asarray(surface.triangles_center))
    cell_volume = float(np.prod(spacing))
    # Parts of one channel closer than two grid cells are never told apart: marching
    # cubes can open such cracks in one surface.
    gap_m = max(config.split_gap_m, 2.0 * max(spacing))
    objects = []
    first = 0 if include_background else 1
    for k in range(first, model.num_channels):
        selected = np.flatnonzero(face_owner == k)
        if len(selected) < min_object:
            continue
        mesh = surface.submesh([selected], append=True, repair=False)
        parts = channel_parts(mesh, min_component, min_object,
                              gap_m if config.split_channels and k != 0 else None)
        if not parts:
            continue
        inside = (scene < 0) & (owner == k)
        boxes = None
        if config.object_mesh == "closed" and k != 0:
            # the solid stays within the bounds of the surface the channel owns (channel_solid)
            # (one cell wider: a cut on the solid's own boundary would leave marching-cubes defects)
            boxes = [np.asarray(m.bounds) + np.array([[-1.0], [1.0]]) * max(spacing) for m in parts]
            cells = np.argwhere(inside)
            inside[tuple(cells[box_distance(cells * np.asarray(spacing) + origin, boxes) > 0].T)] = False
        if len(parts) > 1:
            # the channel's interior cells go to the part nearest to them
            cells = np.argwhere(inside) * np.asarray(spacing) + origin
            vertex_part = np.concatenate([np.full(len(m.vertices), i) for i, m in enumerate(parts)])
            tree = cKDTree(np.concatenate([np.asarray(m.vertices) for m in parts]))
            cell_part = vertex_part[tree.query(cells)[1]] if len(cells) else np.zeros(0, int)
            volumes = list(np.bincount(cell_part, minlength=len(parts)) * cell_volume)
        else:
            volumes = [float(np.count_nonzero(inside)) * cell_volume]
        closed = None
        if config.object_mesh == "closed" and k != 0:
            closed = _closed_parts(channel_solid(model, k, inside, axes, boxes=boxes), parts,
                                   int(round(config.min_component_faces * face_scale)))
        for i, (part, volume) in enumerate(zip(parts, volumes)):
            mesh_i, shell, pieces = part, None, [part]
            if closed is not None and closed[i]:
                pieces = closed[i]
                mesh_i = trimesh.util.concatenate(pieces) if len(pieces) > 1 else pieces[0]
                shell = part
            watertight = all(p.is_watertight for p in pieces)
            if watertight:
                volume = float(sum(abs(p.volume) for p in pieces))
            pose, size = oriented_box_upright(np.asarray(mesh_i.vertices))
            class_id, confidence = int(channel_classes[k]), float(channel_confidence[k])
            if len(parts) > 1 and class_votes is not None:
                voted, _ = class_votes.class_of(np.asarray(part.vertices))
                if voted > 0:
                    class_id = voted          # confidence stays the channel's label agreement
            objects.append(ExtractedObject(
                channel=k, mesh=mesh_i, class_id=class_id,
                confidence=confidence, centroid=np.asarray(mesh_i.centroid),
                box_pose=pose, box_size=size, volume=float(volume), part=i,
                num_channels=model.num_channels, shell=shell, watertight=watertight))
    return objects
