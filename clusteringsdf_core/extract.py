"""From a trained model to objects: meshes per channel, boxes, classes, stable ids.

:func:`extract_objects` evaluates the SDF channels on a grid over the scene
bounds, runs marching cubes once on the scene SDF (the minimum over channels) and
splits its faces by the channel that is smallest at each face (channel 0, the
background, gives the room); it removes small disconnected fragments and drops
channels with too little surface; optionally each channel's spatially separate
parts become objects of their own. Each object gets its centroid, a gravity-aligned
oriented bounding box (yaw only: what a planner expects of furniture standing on a
floor), its volume and a semantic class.

:class:`ObjectTracker` keeps object ids stable between extractions while training
goes on (channels can change their contents): new objects are matched to the
previous ones by 3D box overlap (Hungarian assignment), unmatched ones get fresh
ids that are never reused.
"""

from __future__ import annotations

import json
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import trimesh
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from clusteringsdf_core.class_votes import ClassVotes
from clusteringsdf_core.config import ExtractConfig
from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.model.scene_model import ClusteringSDFModel

__all__ = ["ExtractedObject", "extract_objects", "channel_parts", "sdf_grid", "ObjectTracker", "TrackedObject",
           "export_objects", "oriented_box_upright", "box_iou_3d"]


@dataclass
class ExtractedObject:
    channel: int
    mesh: trimesh.Trimesh                  # world frame, metres
    class_id: int
    confidence: float
    centroid: np.ndarray                   # (3,)
    box_pose: np.ndarray                   # (4, 4) box centre and orientation (yaw only)
    box_size: np.ndarray                   # (3,) full edge lengths along the box axes
    volume: float                          # m^3 of the scene interior owned by the object
    #: which of its channel's spatially separate parts this object is (0 when the
    #: channel is one object: ``extract.split_channels`` off, or one part only)
    part: int = 0
    #: the channel's number of channels (instance ids of parts are channel + part * it)
    num_channels: int = 0

    @property
    def aabb(self) -> np.ndarray:
        return self.mesh.bounds

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
    becomes object k, for either SDF parametrisation. The volume is that of the
    grid cells inside the scene (negative SDF) owned by the channel.
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
        if len(parts) > 1:
            # the channel's interior cells go to the part nearest to them
            cells = np.argwhere(inside) * np.asarray(spacing) + origin
            vertex_part = np.concatenate([np.full(len(m.vertices), i) for i, m in enumerate(parts)])
            tree = cKDTree(np.concatenate([np.asarray(m.vertices) for m in parts]))
            cell_part = vertex_part[tree.query(cells)[1]] if len(cells) else np.zeros(0, int)
            volumes = np.bincount(cell_part, minlength=len(parts)) * cell_volume
        else:
            volumes = [float(np.count_nonzero(inside)) * cell_volume]
        for i, (part, volume) in enumerate(zip(parts, volumes)):
            pose, size = oriented_box_upright(np.asarray(part.vertices))
            class_id, confidence = int(channel_classes[k]), float(channel_confidence[k])
            if len(parts) > 1 and class_votes is not None:
                voted, share = class_votes.class_of(np.asarray(part.vertices))
                if voted > 0:
                    class_id, confidence = voted, share
            objects.append(ExtractedObject(
                channel=k, mesh=part, class_id=class_id,
                confidence=confidence, centroid=np.asarray(part.centroid),
                box_pose=pose, box_size=size, volume=float(volume), part=i,
                num_channels=model.num_channels))
    return objects


@dataclass
class TrackedObject:
    id: int
    object: ExtractedObject
    first_seen: float
    last_updated: float
    num_observations: int = 0
    #: consecutive extractions the object was absent from; its geometry is from the
    #: last extraction that had it (0 = seen in the latest one)
    misses: int = 0


@dataclass
class _Candidate:
    """An object seen in fewer than ``confirm_after`` consecutive extractions (no id yet)."""

    object: ExtractedObject
    first_seen: float
    hits: int = 1


@dataclass
class ObjectTracker:
    """Assigns stable ids to extracted objects across extractions, with hysteresis.

    Objects of consecutive extractions are matched by 3D box IoU (Hungarian assignment,
    at least ``match_iou``). While training goes on, small fragments near the surface
    threshold come and go between extractions; a planner should not see them as objects
    that appear and vanish. So an object without an id gets one only once it has been
    matched in ``confirm_after`` consecutive extractions (1 = at once), and an object
    with an id stays published, with the geometry of the last extraction that had it,
    until it has been missed in ``drop_after`` consecutive extractions (1 = dropped at
    the first miss). Ids are never reused.
    """

    match_iou: float = 0.2
    confirm_after: int = 2
    drop_after: int = 2
    next_id: int = 1
    objects: dict[int, TrackedObject] = field(default_factory=dict)
    candidates: list[_Candidate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.confirm_after < 1 or self.drop_after < 1:
            raise ValueError(f"ObjectTracker: confirm_after ({self.confirm_after}) and drop_after "
                             f"({self.drop_after}) must be at least 1")

    @classmethod
    def from_config(cls, config: ExtractConfig, **overrides) -> "ObjectTracker":
        fields = {"match_iou": config.match_iou, "confirm_after": config.confirm_after,
                  "drop_after": config.drop_after}
        return cls(**{**fields, **overrides})

    def update(self, extracted: list[ExtractedObject], stamp: float, *,
               confirm_new: bool = False) -> list[TrackedObject]:
        """Match ``extracted`` to the known objects; the published objects, by id.

        ``confirm_new`` gives every unmatched object an id at once (a saved map or an
        offline extraction, where no later extraction will confirm it)."""
        tracks: list[TrackedObject | _Candidate] = [*self.objects.values(), *self.candidates]
        matched: dict[int, TrackedObject | _Candidate] = {}
        if tracks and extracted:
            iou = np.array([[box_iou_3d(t.object.aabb, e.aabb) for e in extracted] for t in tracks])
            # Objects with ids are matched before candidates: a fragment must not take
            # over a published object's id because their boxes overlap equally.
            priority = np.array([1.0 if isinstance(t, TrackedObject) else 0.0 for t in tracks])
            score = np.where(iou >= self.match_iou, iou + 2.0 * priority[:, None], 0.0)
            rows, cols = linear_sum_assignment(-score)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.match_iou:
                    matched[int(c)] = tracks[r]
        current: dict[int, TrackedObject] = {}
        candidates: list[_Candidate] = []
        for i, obj in enumerate(extracted):
            track = matched.get(i)
            if isinstance(track, TrackedObject):
                changed = not np.allclose(track.object.aabb, obj.aabb, atol=1e-3)
                current[track.id] = dataclasses.replace(
                    track, object=obj, misses=0, last_updated=stamp if changed else track.last_updated)
                continue
            hits = track.hits + 1 if isinstance(track, _Candidate) else 1
            first_seen = track.first_seen if isinstance(track, _Candidate) else stamp
            if confirm_new or hits >= self.confirm_after:
                current[self.next_id] = TrackedObject(self.next_id, obj, first_seen, stamp)
                self.next_id += 1
            else:
                candidates.append(_Candidate(obj, first_seen, hits))
        seen = {id(t) for t in matched.values()}
        for track in self.objects.values():
            if id(track) not in seen and track.misses + 1 < self.drop_after:
                current[track.id] = dataclasses.replace(track, misses=track.misses + 1)
        self.objects = current
        self.candidates = candidates
        return [current[i] for i in sorted(current)]


def export_objects(tracked: list[TrackedObject], out_dir: str | Path, classes: ClassTable,
                   *, mesh_format: str = "ply", iteration: int = 0) -> Path:
    """Write one mesh per object, a scene mesh coloured by object and ``objects.json``."""
    from clusteringsdf_core.viz import label_colours

    out = Path(out_dir)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    records, coloured = [], []
    for t in tracked:
        o = t.object
        name = f"meshes/object_{t.id:04d}.{mesh_format}"
        o.mesh.export(out / name)
        m = o.mesh.copy()
        m.visual.vertex_colors = np.concatenate([np.tile(label_colours(np.array([t.id]))[0], (len(m.vertices), 1)),
                                                 np.full((len(m.vertices), 1), 255)], axis=1).astype(np.uint8)
        coloured.append(m)
        records.append({
            "id": t.id, "class_id": o.class_id, "class_name": classes.name_of(o.class_id),
            "confidence": round(o.confidence, 4), "channel": o.channel, "part": o.part,
            "centroid": np.round(o.centroid, 4).tolist(),
            "bbox_pose": np.round(o.box_pose, 5).tolist(), "bbox_size": np.round(o.box_size, 4).tolist(),
            "volume_m3": round(o.volume, 5), "num_faces": int(len(o.mesh.faces)), "mesh": name,
            "first_seen": t.first_seen, "last_updated": t.last_updated,
        })
    if coloured:
        trimesh.util.concatenate(coloured).export(out / f"scene_objects.{mesh_format}")
    path = out / "objects.json"
    path.write_text(json.dumps({"iteration": iteration, "objects": records}, indent=1))
    return path
