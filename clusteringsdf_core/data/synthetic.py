"""Synthetic indoor scenes with exact ground truth.

A room (floor, four walls, ceiling: the "stuff" classes) furnished with real
furniture models (Sweet Home 3D catalogs, see :mod:`.furniture`) placed on the floor
without overlap, small objects (lamps, televisions) on tables, desks and low
cabinets, and a camera that walks around the room at head height looking inwards.
Two layouts (``SyntheticSceneConfig.layout``): ``"apart"`` keeps every footprint
``object_gap`` from the others and ``wall_clearance`` from the walls, so that geometry
alone separates the objects; ``"touching"`` stands furniture side by side against
two walls, pushes chairs under a table and rests small objects on their supports, so
that objects touch as in real rooms (the camera walks between the wall furniture and
the table).
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
           "write_synthetic_scene", "look_at", "SceneRenderer", "LAYOUTS", "stored_config_matches"]

log = logging.getLogger(__name__)

# Relative frequency of the classes placed on the floor.
_LARGE_WEIGHTS = {"chair": 3.0, "table": 2.0, "sofa": 1.2, "bed": 0.8, "cabinet": 1.5,
                  "bookshelf": 1.0, "desk": 1.0, "refrigerator": 0.4, "otherfurniture": 0.6}
_SUPPORTS = ("table", "desk", "cabinet")

#: Values of ``SyntheticSceneConfig.layout``; the first is the default.
LAYOUTS = ("apart", "touching")
# Touching layout: the classes stood against a wall and their greatest depth there, the
# supports of small objects (low bookshelves too), the cell of the contact tests.
_WALL_CLASSES = ("cabinet", "bookshelf", "desk", "sofa", "refrigerator", "otherfurniture")
_WALL_DEPTH_MAX = 0.75
_TOUCHING_SUPPORTS = _SUPPORTS + ("bookshelf",)
_CELL = 0.02


@dataclass(frozen=True)
class SyntheticSceneConfig:
    """Parameters of a synthetic scene (all lengths in metres).

    ``layout`` (one of :data:`LAYOUTS`): ``"apart"`` places every footprint at least
    ``object_gap`` from the others and ``wall_clearance`` from the walls; ``"touching"``
    stands furniture against the walls x = -w/2 and x = +w/2, side by side without gap,
    pushes chairs under a table (or desk) in the middle of the room and rests small
    objects on their supports: ``object_gap`` is then unused, and ``wall_clearance`` is
    the corridor of the camera between the wall furniture and the table.
    """

    seed: int = 0
    room_width_range: tuple[float, float] = (5.0, 6.5)    # x extent
    room_depth_range: tuple[float, float] = (4.0, 5.5)    # y extent
    room_height: float = 2.7
    num_objects: int = 8             # large objects on the floor
    num_small_objects: int = 2       # objects on tables / desks / low cabinets
    wall_clearance: float = 0.9      # free corridor along the walls (touching: along the wall
                                     # furniture), where the camera walks
    object_gap: float = 0.15         # minimum gap between object footprints ("apart" layout)
    layout: str = "apart"            # "apart": objects stand apart; "touching": against walls,
                                     # side by side, chairs under tables (see the docstring)
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
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose from {LAYOUTS}")


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


def _surface_points(model: FurnitureModel) -> np.ndarray:
    """About two surface samples per square centimetre of a model (and its vertices),
    in the model frame; deterministic."""
    mesh = model.mesh()
    count = int(np.clip(mesh.area * 2e4, 2000, 200_000))
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=0)
    return np.concatenate([points, mesh.vertices])


class _Columns:
    """A placed object as vertical intervals on a 2 cm xy grid: per cell the lowest and
    highest surface point (conservative: solid in between), for contact tests."""

    def __init__(self, points_world: np.ndarray):
        cells = np.floor(points_world[:, :2] / _CELL).astype(np.int64)
        key = cells[:, 0] * (1 << 20) + cells[:, 1] + (1 << 19)
        order = np.argsort(key, kind="stable")
        self.keys, start = np.unique(key[order], return_index=True)
        z = points_world[order, 2]
        self.lo, self.hi = np.minimum.reduceat(z, start), np.maximum.reduceat(z, start)

    def collides(self, other: "_Columns", tol: float = 0.005) -> bool:
        """Whether the intervals of a shared cell overlap by more than ``tol``."""
        _, i, j = np.intersect1d(self.keys, other.keys, assume_unique=True, return_indices=True)
        return bool(np.any(np.minimum(self.hi[i], other.hi[j]) - np.maximum(self.lo[i], other.lo[j]) > tol))

    def top_under(self, box: np.ndarray) -> float | None:
        """Highest surface point in the cells under the xy box [xmin, ymin, xmax, ymax]."""
        ix, iy = self.keys >> 20, (self.keys & ((1 << 20) - 1)) - (1 << 19)
        lo, hi = np.floor(box[:2] / _CELL), np.floor(box[2:] / _CELL)
        inside = (ix >= lo[0]) & (ix <= hi[0]) & (iy >= lo[1]) & (iy <= hi[1])
        return float(self.hi[inside].max()) if inside.any() else None


def _placed_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


# --------------------------------------------------------------------------- layout


def _place_objects(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
                   w: float, d: float, classes: ClassTable) -> tuple[list[PlacedObject], np.ndarray]:
    """The objects of the scene's layout, and the rectangle [xmin, ymin, xmax, ymax] that
    the wall furniture leaves free, where the camera walks (no object stands within about
    ``wall_clearance`` of its sides)."""
    if cfg.layout == "touching":
        placed, walk, columns = _place_touching(cfg, rng, library, w, d, classes)
        supports = [p for p in placed if p.model.class_name in _TOUCHING_SUPPORTS
                    and p.model.size_m[2] < 1.2]

        def rest_on(base: PlacedObject, box: np.ndarray, model: FurnitureModel, T: np.ndarray):
            """Stand the model on the highest point of the base under its footprint (no
            gap), unless it would cut into another object."""
            z = columns[base.instance_id].top_under(box)
            if z is None:
                return None
            T = T.copy()
            T[2, 3] = z
            mine = _Columns(_placed_points(_surface_points(model), T))
            return None if any(mine.collides(c) for c in columns.values()) else T
    else:
        placed = _place_apart(cfg, rng, library, w, d, classes)
        walk = np.array([-w / 2, -d / 2, w / 2, d / 2])
        supports = [p for p in placed if p.model.class_name in _SUPPORTS and p.model.size_m[2] < 1.2]

        def rest_on(base: PlacedObject, box: np.ndarray, model: FurnitureModel, T: np.ndarray):
            T = T.copy()
            T[2, 3] = base.model.mesh().bounds[1][2] + 0.002
            return T
    _place_small(cfg, rng, library, classes, placed, supports, rest_on)
    # Per-object colour tint so that copies of one model differ.
    for obj in placed:
        tint = rng.uniform(0.15, 0.95, 3)
        obj.parts_world = []
        for mesh, colour in obj.model.parts:
            m = mesh.copy()
            m.apply_transform(obj.T_world_obj)
            obj.parts_world.append((m, np.clip(0.55 * colour + 0.45 * tint, 0, 1)))
    return placed, walk


def _place_apart(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
                 w: float, d: float, classes: ClassTable) -> list[PlacedObject]:
    """Floor objects at random, footprints ``object_gap`` apart, ``wall_clearance`` from the walls."""
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
    return placed


def _sample(library: FurnitureLibrary, names: list[str], rng: np.random.Generator,
            accept: Callable[[FurnitureModel], bool] = lambda m: True,
            tries: int = 20) -> FurnitureModel | None:
    """A model of one of ``names`` (drawn by ``_LARGE_WEIGHTS``) that ``accept`` takes."""
    names = [c for c in names if c in library.classes()]
    if not names:
        return None
    weights = np.array([_LARGE_WEIGHTS.get(c, 1.0) for c in names])
    for _ in range(tries):
        try:
            model = library.sample(str(rng.choice(names, p=weights / weights.sum())), rng)
        except KeyError:
            continue
        if accept(model):
            return model
    return None


def _span(model: FurnitureModel, T: np.ndarray) -> np.ndarray:
    """Extent (x, y) of a model's footprint at pose ``T``."""
    box = _footprint(model, T)
    return box[2:] - box[:2]


def _shifted(T: np.ndarray, dxy) -> np.ndarray:
    T = T.copy()
    T[:2, 3] += dxy
    return T


def _place_touching(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
                    w: float, d: float, classes: ClassTable
                    ) -> tuple[list[PlacedObject], np.ndarray, dict[int, "_Columns"]]:
    """The touching layout: a table (or desk) in the middle of the room with chairs pushed
    under its sides until they touch it, then furniture stood against the walls x = -w/2
    and x = +w/2 (1 mm off them), side by side without gap. Returns the objects, the
    camera's walk rectangle (the room less the depth of the wall furniture) and the
    :class:`_Columns` of every object by instance id."""
    placed: list[PlacedObject] = []
    boxes: list[np.ndarray] = []
    columns: dict[int, _Columns] = {}

    def add(model: FurnitureModel, T: np.ndarray, cols: _Columns | None = None) -> None:
        placed.append(PlacedObject(len(placed) + 1, classes.id_of(model.class_name), model, T))
        boxes.append(_footprint(model, T))
        columns[len(placed)] = cols or _Columns(_placed_points(_surface_points(model), T))

    c = cfg.wall_clearance
    lo = np.array([-w / 2 + _WALL_DEPTH_MAX + c, -d / 2 + c])   # the middle, whatever stands at the walls
    hi = -lo
    num_chairs = min(int(rng.integers(2, 5)), max(cfg.num_objects - 2, 0))
    T_table = _yaw_pose(0.0, 0.0, 0.0, rng.integers(4) * np.pi / 2)
    fits = lambda m: m.size_m[2] > 0.6 and (_span(m, T_table) <= hi - lo).all()  # noqa: E731
    table = _sample(library, ["table", "desk"], rng, fits) if (hi > lo).all() else None
    if table is not None:
        box = _footprint(table, T_table)
        # Keep the chairs' depth free around the table where the middle allows it.
        margin = np.minimum((hi - lo - _span(table, T_table)) / 2, 0.35)
        add(table, _shifted(T_table, rng.uniform(lo + margin - box[:2], hi - margin - box[2:])))
        _push_chairs(rng, library, placed[-1], num_chairs, lo, hi, boxes, columns, add)
    # Furniture against the two walls, side by side from a random start near a corner.
    cursor = {side: -d / 2 + 0.001 + float(rng.uniform(0, 0.6)) for side in (-1, 1)}
    depth = {-1: 0.0, 1: 0.0}
    misses = 0
    while len(placed) < cfg.num_objects and misses < 5:
        model = _sample(library, list(_WALL_CLASSES), rng, lambda m: m.size_m[1] <= _WALL_DEPTH_MAX)
        if model is None:
            break
        misses += 1
        for side in sorted(cursor, key=lambda s: cursor[s]):
            T = _yaw_pose(0.0, 0.0, 0.0, -side * np.pi / 2)   # the back (+y) against the wall
            box = _footprint(model, T)
            wall_x = side * (w / 2 - 0.001)
            dxy = np.array([wall_x - (box[2] if side > 0 else box[0]), cursor[side] - box[1]])
            if box[3] + dxy[1] <= d / 2 - 0.001:
                add(model, _shifted(T, dxy))
                cursor[side] = boxes[-1][3]
                depth[side] = max(depth[side], boxes[-1][2] - boxes[-1][0])
                misses = 0
                break
    if len(placed) < cfg.num_objects:
        log.warning("placed %d of %d objects (room too small for them)", len(placed), cfg.num_objects)
    walk = np.array([-w / 2 + depth[-1], -d / 2, w / 2 - depth[1], d / 2])
    return placed, walk, columns


def _push_chairs(rng: np.random.Generator, library: FurnitureLibrary, table: PlacedObject, count: int,
                 lo: np.ndarray, hi: np.ndarray, boxes: list[np.ndarray], columns: dict[int, _Columns],
                 add: Callable) -> None:
    """Up to ``count`` chairs facing the table's sides, each pushed towards it in 1 cm steps
    until it would cut into the table (seat under the top, back against its edge) or
    overlaps it by 60 % of its depth; kept inside [lo, hi] and off the other footprints."""
    size = table.model.size_m
    # (outward normal of a side and offset along it, in the table frame; chair yaw there,
    # its front (-y) towards the table): two chairs on a long side of 1.1 m or more.
    slots = []
    for normal, rel in (((0, 1), 0.0), ((0, -1), np.pi), ((1, 0), -np.pi / 2), ((-1, 0), np.pi / 2)):
        offsets = (-size[0] / 4, size[0] / 4) if normal[0] == 0 and size[0] >= 1.1 else (0.0,)
        slots += [(np.array(normal, float), t, rel) for t in offsets]
    table_cols = columns[table.instance_id]
    R = table.T_world_obj[:2, :2]
    for k in rng.permutation(len(slots)):
        if count <= 0:
            break
        normal, t, rel = slots[int(k)]
        chair = _sample(library, ["chair"], rng)
        if chair is None:
            return
        direction = R @ normal
        reach = size[:2] @ np.abs(normal) / 2 + chair.size_m[1] / 2 + 0.05
        yaw = float(np.arctan2(R[1, 0], R[0, 0])) + rel + float(rng.normal(0, np.radians(3)))
        along = np.abs(normal[::-1])                   # the side's direction
        centre = table.T_world_obj[:2, 3] + R @ (t * along) + direction * reach
        points = _surface_points(chair)
        best = None
        for step in range(int((0.05 + 0.6 * chair.size_m[1]) / 0.01) + 1):
            T = _yaw_pose(*(centre - direction * 0.01 * step), 0.0, yaw)
            cols = _Columns(_placed_points(points, T))
            if cols.collides(table_cols):
                break
            best = (T, cols)
        if best is None:
            continue
        box = _footprint(chair, best[0])
        others = [b for i, b in enumerate(boxes) if i + 1 != table.instance_id]
        if (box[:2] < lo).any() or (box[2:] > hi).any() or _overlaps(box, others, 0.0):
            continue
        add(chair, *best)
        count -= 1


def _place_small(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
                 classes: ClassTable, placed: list[PlacedObject], supports: list[PlacedObject],
                 rest_on: Callable) -> None:
    """Small objects on the tops of ``supports``: ``rest_on(base, footprint, model, pose)``
    gives the pose at its height, or None when it cannot stand there."""
    small = [c for c in SMALL_CLASSES if c in library.classes()]
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
        base_box = _footprint(base.model, base.T_world_obj)
        for _ in range(30):
            margin = max(model.size_m[:2]) / 2 + 0.03
            if base_box[2] - base_box[0] <= 2 * margin or base_box[3] - base_box[1] <= 2 * margin:
                break
            x = rng.uniform(base_box[0] + margin, base_box[2] - margin)
            y = rng.uniform(base_box[1] + margin, base_box[3] - margin)
            T = _yaw_pose(x, y, 0.0, float(rng.uniform(-np.pi, np.pi)))
            box = _footprint(model, T)
            if not _overlaps(box, top_boxes, 0.05):
                T = rest_on(base, box, model, T)
                if T is None:
                    continue
                placed.append(PlacedObject(len(placed) + 1, classes.id_of(cls), model, T))
                top_boxes.append(box)
                break


def _trajectory(rng: np.random.Generator, walk: np.ndarray, n: int, inset: float, height: float,
                phase: float, height_swing: float) -> list[np.ndarray]:
    """Poses along a rounded rectangle ``inset`` from the sides of the walk rectangle
    [xmin, ymin, xmax, ymax], looking into the room."""
    a, b = (walk[2] - walk[0]) / 2 - inset, (walk[3] - walk[1]) / 2 - inset
    cx, cy = (walk[0] + walk[2]) / 2, (walk[1] + walk[3]) / 2
    t = (np.arange(n) + phase) / n * 2 * np.pi
    # A superellipse: close to the sides, rounded corners.
    p = 0.35
    x = cx + a * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** p
    y = cy + b * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** p
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
    objects, walk = _place_objects(config, rng, library, w, d, classes)
    stuff = _room_stuff(w, d, h, classes)
    renderer = _build_renderer(objects, stuff, rng, classes)
    if not renderer.uses_embree:
        log.warning("Embree is not available: ray casting falls back to trimesh's slow "
                    "pure-Python intersector (pip install embreex)")
    K = Intrinsics.from_fov(config.width, config.height, config.hfov_deg)
    inset = config.wall_clearance * 0.55
    train_poses = _trajectory(rng, walk, config.num_train, inset, config.camera_height, 0.0, 0.1)
    test_poses = _trajectory(rng, walk, config.num_test, inset * 1.3, config.camera_height - 0.2,
                             0.37, 0.25)
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
        name=f"synthetic_seed{config.seed}" + ("" if config.layout == LAYOUTS[0] else f"_{config.layout}"),
        train=frames[:len(train_poses)],
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


def stored_config_matches(stored, config: SyntheticSceneConfig) -> bool:
    """Whether ``stored`` (``meta.config`` of a written scene) is ``config``; one written
    before the ``layout`` field existed is of the default layout."""
    return isinstance(stored, dict) and {"layout": LAYOUTS[0], **stored} == _jsonable(asdict(config))


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
