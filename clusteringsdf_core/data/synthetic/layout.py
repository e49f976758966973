"""Where things go in a synthetic room: the room's floor, walls and ceiling, the
furniture placed apart or touching (:data:`~.config.LAYOUTS`), small objects on their
supports, and the camera paths (training and held-out test walks)."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import trimesh

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.synthetic.config import PlacedObject, SyntheticSceneConfig
from clusteringsdf_core.data.synthetic.furniture import (LARGE_CLASSES, SMALL_CLASSES, FurnitureLibrary,
                                                         FurnitureModel)
from clusteringsdf_core.geometry.camera import look_at

__all__ = ["room_stuff", "place_objects", "trajectory"]

log = logging.getLogger(__name__)

# Relative frequency of the classes placed on the floor.
_LARGE_WEIGHTS = {"chair": 3.0, "table": 2.0, "sofa": 1.2, "bed": 0.8, "cabinet": 1.5,
                  "bookshelf": 1.0, "desk": 1.0, "refrigerator": 0.4, "otherfurniture": 0.6}
_SUPPORTS = ("table", "desk", "cabinet")

# Touching layout: the classes stood against a wall and their greatest depth there, the
# supports of small objects (low bookshelves too), the cell of the contact tests.
_WALL_CLASSES = ("cabinet", "bookshelf", "desk", "sofa", "refrigerator", "otherfurniture")
_WALL_DEPTH_MAX = 0.75
_TOUCHING_SUPPORTS = _SUPPORTS + ("bookshelf",)
_CELL = 0.02


def _plane(origin, u, v, nu: int, nv: int) -> trimesh.Trimesh:
    """A grid-subdivided rectangle origin + s*u + t*v; normal = u x v."""
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    vertices = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(vertices, faces, process=False)


def room_stuff(w: float, d: float, h: float, classes: ClassTable, cell: float = 0.25):
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


def place_objects(cfg: SyntheticSceneConfig, rng: np.random.Generator, library: FurnitureLibrary,
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


def trajectory(rng: np.random.Generator, walk: np.ndarray, n: int, inset: float, height: float,
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
