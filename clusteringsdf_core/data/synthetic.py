"""Synthetic indoor scenes with exact ground truth.

A room (floor, four walls, ceiling: the "stuff" classes) furnished with real
furniture models (Sweet Home 3D catalogs, see :mod:`.furniture`) placed on the floor
without overlap, small objects (lamps, televisions) on tables, desks and low
cabinets, and a camera that walks around the room at head height looking inwards.
Frames are rendered by ray casting (trimesh with Embree): shaded RGB with
per-object colours and patterns, metric depth (with optional sensor-like noise),
GT instance and semantic maps. Held-out test frames come from a different path
(other height, inset and phase): novel views.

Everything is deterministic for a seed. :func:`generate_scene` returns the scene
in memory; :func:`write_synthetic_scene` writes it in the canonical layout
(:mod:`.dataset`) together with the GT meshes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import trimesh

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.dataset import GTObject, SceneDataset, write_scene
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.data.furniture import (LARGE_CLASSES, SMALL_CLASSES, FurnitureLibrary,
                                               FurnitureModel, furniture_library)

__all__ = ["SyntheticSceneConfig", "SyntheticScene", "PlacedObject", "generate_scene",
           "write_synthetic_scene", "look_at", "SceneRenderer"]

log = logging.getLogger(__name__)

# Relative frequency of the classes placed on the floor.
_LARGE_WEIGHTS = {"chair": 3.0, "table": 2.0, "sofa": 1.2, "bed": 0.8, "cabinet": 1.5,
                  "bookshelf": 1.0, "desk": 1.0, "refrigerator": 0.4, "otherfurniture": 0.6}
_SUPPORTS = ("table", "desk", "cabinet")


@dataclass(frozen=True)
class SyntheticSceneConfig:
    """Parameters of a synthetic scene (all lengths in metres)."""

    seed: int = 0
    room_width_range: tuple[float, float] = (5.0, 6.5)    # x extent
    room_depth_range: tuple[float, float] = (4.0, 5.5)    # y extent
    room_height: float = 2.7
    num_objects: int = 8             # large objects on the floor
    num_small_objects: int = 2       # objects on tables / desks / low cabinets
    wall_clearance: float = 0.9      # free corridor along the walls, where the camera walks
    object_gap: float = 0.15         # minimum gap between object footprints
    furniture: str = "auto"          # "auto" | "sweethome3d" | "procedural"
    width: int = 320
    height: int = 240
    hfov_deg: float = 70.0
    num_train: int = 80
    num_test: int = 20
    camera_height: float = 1.5
    frame_rate_hz: float = 5.0       # stamps of the walk (for bags)
    depth_noise: bool = True         # Kinect-like axial noise and dropouts at grazing angles
    rgb_noise: float = 2.0           # std of RGB noise, 8-bit levels

    def __post_init__(self) -> None:
        if self.num_objects < 1:
            raise ValueError("num_objects must be >= 1")
        if min(self.width, self.height) < 8:
            raise ValueError("image size must be at least 8x8")
        if self.num_train < 1 or self.num_test < 0:
            raise ValueError("need at least one training frame")


@dataclass
class PlacedObject:
    """A furniture model placed in the room."""

    instance_id: int
    class_id: int
    model: FurnitureModel
    T_world_obj: np.ndarray          # (4, 4)
    parts_world: list[tuple[trimesh.Trimesh, np.ndarray]] = field(default_factory=list)

    def mesh(self) -> trimesh.Trimesh:
        return trimesh.util.concatenate([m for m, _ in self.parts_world])


@dataclass
class SyntheticScene:
    config: SyntheticSceneConfig
    room_size: np.ndarray                   # (3,) width, depth, height
    objects: list[PlacedObject]
    stuff: list[tuple[trimesh.Trimesh, int]]   # (mesh, class id) of floor, walls, ceiling
    dataset: SceneDataset
    furniture_source: str


# --------------------------------------------------------------------------- geometry


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose of an optical frame (x right, y down, z forward) at ``eye``
    looking at ``target`` in a z-up world."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def _plane(origin, u, v, nu: int, nv: int) -> trimesh.Trimesh:
    """A grid-subdivided rectangle origin + s*u + t*v; normal = u x v."""
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    vertices = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(vertices, faces, process=False)


def _room_stuff(w: float, d: float, h: float, classes: ClassTable, cell: float = 0.25):
    n = lambda length: max(1, int(round(length / cell)))  # noqa: E731
    x0, y0 = -w / 2, -d / 2
    ex, ey, ez = np.array([w, 0, 0.0]), np.array([0, d, 0.0]), np.array([0, 0, h])
    o = np.array([x0, y0, 0.0])
    floor = _plane(o, ex, ey, n(w), n(d))                         # normal +z
    ceiling = _plane(o + ez, ey, ex, n(d), n(w))                  # normal -z
    walls = [
        _plane(o, ez, ex, n(h), n(w)),                            # y = -d/2, normal +y
        _plane(o + ey, ex, ez, n(w), n(h)),                       # y = +d/2, normal -y
        _plane(o, ey, ez, n(d), n(h)),                            # x = -w/2, normal +x
        _plane(o + ex, ez, ey, n(h), n(d)),                       # x = +w/2, normal -x
    ]
    wall = trimesh.util.concatenate(walls)
    return [(floor, classes.id_of("floor")), (wall, classes.id_of("wall")),
            (ceiling, classes.id_of("ceiling"))]


def _yaw_pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [x, y, z]
    return T


def _footprint(model: FurnitureModel, T: np.ndarray) -> np.ndarray:
    """World xy AABB [xmin, ymin, xmax, ymax] of a placed model."""
    lo, hi = model.mesh().bounds
    corners = np.array([[x, y, 0, 1] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])]) @ T.T
    return np.array([*corners[:, :2].min(0), *corners[:, :2].max(0)])


def _overlaps(box: np.ndarray, others: list[np.ndarray], gap: float) -> bool:
    for o in others:
        if box[0] < o[2] + gap and o[0] < box[2] + gap and box[1] < o[3] + gap and o[1] < box[3] + gap:
            return True
    return False


# --------------------------------------------------------------------------- layout


def _place_objects(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
                   w: float, d: float, classes: ClassTable) -> list[PlacedObject]:
    available = [c for c in LARGE_CLASSES if c in library.classes()]
    weights = np.array([_LARGE_WEIGHTS.get(c, 1.0) for c in available])
    weights /= weights.sum()
    lo = np.array([-w / 2 + cfg.wall_clearance, -d / 2 + cfg.wall_clearance])
    hi = -lo
    placed: list[PlacedObject] = []
    boxes: list[np.ndarray] = []
    attempts = 0
    while len(placed) < cfg.num_objects and attempts < cfg.num_objects * 40:
        attempts += 1
        cls = str(rng.choice(available, p=weights))
        try:
            model = library.sample(cls, rng)
        except KeyError:
            continue
        yaw = rng.integers(4) * np.pi / 2 + rng.normal(0, np.radians(8))
        for _ in range(60):
            xy = rng.uniform(lo, hi)
            T = _yaw_pose(xy[0], xy[1], 0.0, yaw)
            box = _footprint(model, T)
            if (box[:2] < lo - 0.05).any() or (box[2:] > hi + 0.05).any():
                continue
            if not _overlaps(box, boxes, cfg.object_gap):
                placed.append(PlacedObject(len(placed) + 1, classes.id_of(cls), model, T))
                boxes.append(box)
                break
    if len(placed) < cfg.num_objects:
        log.warning("placed %d of %d objects (room too small for them)", len(placed), cfg.num_objects)
    # Small objects on the tops of tables, desks and low cabinets.
    small = [c for c in SMALL_CLASSES if c in library.classes()]
    supports = [p for p in placed if p.model.class_name in _SUPPORTS and p.model.size_m[2] < 1.2]
    top_boxes: list[np.ndarray] = []
    for _ in range(cfg.num_small_objects):
        if not supports or not small:
            break
        base = supports[int(rng.integers(len(supports)))]
        cls = str(rng.choice(small))
        try:
            model = library.sample(cls, rng)
        except KeyError:
            continue
        if max(model.size_m[:2]) > 0.8 * min(base.model.size_m[:2]) or model.size_m[2] > 0.9:
            continue
        top = base.model.mesh().bounds[1][2]
        base_box = _footprint(base.model, base.T_world_obj)
        for _ in range(30):
            margin = max(model.size_m[:2]) / 2 + 0.03
            if base_box[2] - base_box[0] <= 2 * margin or base_box[3] - base_box[1] <= 2 * margin:
                break
            x = rng.uniform(base_box[0] + margin, base_box[2] - margin)
            y = rng.uniform(base_box[1] + margin, base_box[3] - margin)
            T = _yaw_pose(x, y, top + 0.002, float(rng.uniform(-np.pi, np.pi)))
            box = _footprint(model, T)
            if not _overlaps(box, top_boxes, 0.05):
                placed.append(PlacedObject(len(placed) + 1, classes.id_of(cls), model, T))
                top_boxes.append(box)
                break
    # Per-object colour tint so that copies of one model differ.
    for obj in placed:
        tint = rng.uniform(0.15, 0.95, 3)
        obj.parts_world = []
        for mesh, colour in obj.model.parts:
            m = mesh.copy()
            m.apply_transform(obj.T_world_obj)
            obj.parts_world.append((m, np.clip(0.55 * colour + 0.45 * tint, 0, 1)))
    return placed


def _trajectory(cfg: SyntheticSceneConfig, rng: np.random.Generator, w: float, d: float,
                n: int, inset: float, height: float, phase: float, height_swing: float) -> list[np.ndarray]:
    """Poses along a rounded rectangle ``inset`` from the walls, looking into the room."""
    a, b = w / 2 - inset, d / 2 - inset
    t = (np.arange(n) + phase) / n * 2 * np.pi
    # A superellipse: close to the walls along the sides, rounded corners.
    p = 0.35
    x = a * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** p
    y = b * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** p
    poses = []
    for i in range(n):
        eye = np.array([x[i], y[i], height + height_swing * np.sin(3 * t[i]) + rng.normal(0, 0.03)])
        target = np.array([rng.normal(0, 0.5) - 0.45 * x[i], rng.normal(0, 0.5) - 0.45 * y[i],
                           rng.uniform(0.3, 0.9)])
        poses.append(look_at(eye, target))
    return poses


# --------------------------------------------------------------------------- rendering


class SceneRenderer:
    """Ray-casts a labelled, coloured triangle soup (Embree when installed)."""

    def __init__(self, mesh: trimesh.Trimesh, face_instance: np.ndarray, face_semantic: np.ndarray,
                 face_albedo: np.ndarray, face_pattern: np.ndarray):
        self.mesh = mesh
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
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        dirs_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3)
        R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
        dirs_world = dirs_cam @ R.T
        dirs_unit = dirs_world / np.linalg.norm(dirs_world, axis=1, keepdims=True)
        origins = np.broadcast_to(t, dirs_unit.shape)
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
            stripes = 1.0 + 0.12 * np.sin(pattern[:, 3] * (loc * pattern[:, :3]).sum(1))
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


def _build_renderer(objects: list[PlacedObject], stuff, rng: np.random.Generator,
                    classes: ClassTable) -> SceneRenderer:
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
                         np.concatenate(pattern))


# --------------------------------------------------------------------------- entry points


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
    objects = _place_objects(config, rng, library, w, d, classes)
    stuff = _room_stuff(w, d, h, classes)
    renderer = _build_renderer(objects, stuff, rng, classes)
    if not renderer.uses_embree:
        log.warning("Embree is not available: ray casting falls back to trimesh's slow "
                    "pure-Python intersector (pip install embreex)")
    K = Intrinsics.from_fov(config.width, config.height, config.hfov_deg)
    inset = config.wall_clearance * 0.55
    train_poses = _trajectory(config, rng, w, d, config.num_train, inset, config.camera_height, 0.0, 0.1)
    test_poses = _trajectory(config, rng, w, d, config.num_test, inset * 1.3,
                             config.camera_height - 0.2, 0.37, 0.25)
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
    bounds = np.array([[-w / 2, -d / 2, 0.0], [w / 2, d / 2, h]])
    gt_objects = [GTObject(id=o.instance_id, class_id=o.class_id, name=o.model.name,
                           mesh_file=f"meshes/object_{o.instance_id:04d}.ply", source=o.model.source)
                  for o in objects]
    dataset = SceneDataset(
        name=f"synthetic_seed{config.seed}", train=frames[:len(train_poses)],
        test=frames[len(train_poses):], classes=classes, bounds=bounds, objects=gt_objects,
        meta={"generator": "clusteringsdf synthetic", "config": _jsonable(asdict(config)),
              "furniture": library.kind, "room_size_m": [w, d, h]})
    return SyntheticScene(config, np.array([w, d, h]), objects, stuff, dataset, library.kind)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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
