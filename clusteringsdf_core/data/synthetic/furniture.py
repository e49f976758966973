"""Furniture models for synthetic scenes: Sweet Home 3D catalogs, or procedural shapes.

Debian's ``sweethome3d-furniture`` package ships ~820 real furniture models in
``/usr/share/sweethome3d/furniture/*.sh3f``: zip archives holding OBJ models and a
Java properties catalog (``PluginFurnitureCatalog.properties``) with each model's
name, category, size in centimetres and creator. Models are Y-up and are scaled to
their catalog size, as Sweet Home 3D itself does.

:func:`furniture_library` indexes those catalogs and maps catalog names to the
classes of :data:`~clusteringsdf_core.data.classes.SCANNET_REDUCED`. Where the
package is absent, :class:`ProceduralLibrary` builds recognisable composites of
boxes and cylinders (tables with legs, chairs with backs, beds with headboards ...),
and says so.

Every model comes out as a :class:`FurnitureModel`: a list of coloured parts in a
z-up frame, metres, footprint centred on the origin, standing on z = 0.
"""

from __future__ import annotations

import abc
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import trimesh

__all__ = ["CatalogEntry", "FurnitureModel", "FurnitureLibrary", "CatalogLibrary",
           "ProceduralLibrary", "furniture_library", "classify_name", "SH3D_DIR",
           "LARGE_CLASSES", "SMALL_CLASSES"]

SH3D_DIR = Path("/usr/share/sweethome3d/furniture")
# Catalogs with furniture (Reallusion holds people only).
_CATALOGS = ("BlendSwap-CC-0.sh3f", "BlendSwap-CC-BY.sh3f", "KatorLegaz.sh3f", "Scopia.sh3f")

#: Classes placed on the floor, and small ones placed on tables and desks.
LARGE_CLASSES = ("chair", "table", "sofa", "bed", "cabinet", "bookshelf", "desk", "refrigerator",
                 "otherfurniture")
SMALL_CLASSES = ("lamp", "television")

# Catalog name -> class, first match wins (checked in order; patterns are whole words).
_NAME_RULES: tuple[tuple[str, str | None], ...] = (
    (r"lamppost|street lamp|street light|park light|porch light|outdoor lamp|wall lamp|"
     r"wall light|hanging light|pendant|track lights|fluorescent|spotlight|remote control", None),
    (r"desk lamp|little lamp|table lamp|lamp", "lamp"),
    (r"tv stand|television cabinet|tv cabinet", "cabinet"),
    (r"tv 16:9|wall flat tv|\btv\b|television", "television"),
    (r"table tennis|table fan|technical table|pool table|football table|tablet|table on trestles",
     None),
    (r"bedside table|night ?stand", "cabinet"),
    (r"desk", "desk"),
    (r"coffee table|round table|glass table|wooden table|oak table|cafe table|folding table|"
     r"\btable\b", "table"),
    (r"armchair ottoman", None),
    (r"sofa|couch|futon", "sofa"),
    (r"armchair|chair|stool", "chair"),
    (r"bunk bed|child bed|\bbed\b", "bed"),
    (r"bookcase|bookshelf|shelves", "bookshelf"),
    (r"refrigerator|fridge", "refrigerator"),
    (r"wardrobe|dresser|drawers|cabinet|chest\b|vanity|locker|safe\b", "cabinet"),
    (r"piano|washing machine|stove|oven", "otherfurniture"),
)


def classify_name(name: str) -> str | None:
    """The class of a catalog model from its name, or None when it is not furniture we use."""
    low = name.lower()
    for pattern, cls in _NAME_RULES:
        if re.search(pattern, low):
            return cls
    return None


@dataclass(frozen=True)
class CatalogEntry:
    """One model of a catalog."""

    catalog: str           # archive file name
    model_id: str          # catalog id ("Scopia#wardrobe1")
    name: str              # "Wardrobe"
    category: str          # "Bedroom"
    class_name: str        # class of the reduced table
    model_path: str        # path of the OBJ inside the archive
    size_m: tuple[float, float, float]  # width (x), depth (y), height (z), metres
    creator: str = ""
    license: str = ""

    @property
    def source(self) -> str:
        return f"{self.catalog}:{self.model_id} ({self.name}, by {self.creator or 'unknown'}; {self.license})"


@dataclass
class FurnitureModel:
    """A model ready to place: parts (trimesh meshes with one colour each), z-up, metres,
    footprint centred on the origin, bottom at z = 0."""

    name: str
    class_name: str
    parts: list[tuple[trimesh.Trimesh, np.ndarray]]  # (mesh, RGB colour in [0, 1])
    source: str
    size_m: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def mesh(self) -> trimesh.Trimesh:
        return trimesh.util.concatenate([m for m, _ in self.parts])

    @property
    def num_faces(self) -> int:
        return sum(len(m.faces) for m, _ in self.parts)


class FurnitureLibrary(abc.ABC):
    """Models by class, sampled with a numpy Generator."""

    kind = "abstract"

    @abc.abstractmethod
    def classes(self) -> list[str]:
        """The classes this library has models of."""

    @abc.abstractmethod
    def sample(self, class_name: str, rng: np.random.Generator) -> FurnitureModel:
        """A model of ``class_name`` (KeyError when there is none)."""


# --------------------------------------------------------------------------- catalogs


def _unescape_properties(value: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), value).replace("\\:", ":") \
        .replace("\\=", "=").replace("\\\\", "\\")


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` file as a dict (comments, continuations and \\uXXXX escapes)."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        while line.endswith("\\") and not line.endswith("\\\\"):
            line = line[:-1] + next(lines, "").strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)", line)
        if match:
            out[match.group(1)] = _unescape_properties(match.group(2))
    return out


def read_catalog(path: Path) -> list[CatalogEntry]:
    """The usable entries of one ``.sh3f`` archive."""
    with zipfile.ZipFile(path) as archive:
        props = parse_properties(archive.read("PluginFurnitureCatalog.properties").decode("latin-1"))
    license_text = props.get("license", "")
    entries = []
    indices = sorted({int(k.split("#")[1]) for k in props if k.startswith("id#")})
    for i in indices:
        get = lambda key, default="": props.get(f"{key}#{i}", default)  # noqa: E731
        if get("doorOrWindow") == "true" or get("movable", "true") != "true":
            continue
        cls = classify_name(get("name"))
        if cls is None or not get("model"):
            continue
        try:
            size = tuple(float(get(k)) / 100.0 for k in ("width", "depth", "height"))
        except ValueError:
            continue
        entries.append(CatalogEntry(
            catalog=path.name, model_id=get("id"), name=get("name"), category=get("category"),
            class_name=cls, model_path=get("model").lstrip("/"), size_m=size,  # type: ignore[arg-type]
            creator=get("creator"), license=license_text.split("  ")[0].strip()))
    return entries


class _DictResolver(trimesh.resolvers.Resolver):
    """Serves the files of one model folder of an archive to trimesh's OBJ loader."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def keys(self):
        return self.files.keys()

    def namespaced(self, namespace):
        return self

    def write(self, name, data):
        raise OSError("read-only resolver")

    def get(self, name):
        key = name.replace("\\", "/").lstrip("./")
        if key not in self.files:
            raise KeyError(name)
        return self.files[key]


def _y_up_to_z_up(vertices: np.ndarray) -> np.ndarray:
    # Sweet Home 3D models: x right, y up, z towards the viewer (front).
    # World: x right, y away from the viewer, z up; the model's front faces -y.
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)


class CatalogLibrary(FurnitureLibrary):
    """Real furniture models from the Sweet Home 3D catalogs."""

    kind = "sweethome3d"

    def __init__(self, directory: Path = SH3D_DIR, *, max_faces: int = 60000,
                 max_footprint_m: float = 2.6, min_size_m: float = 0.15):
        self.directory = Path(directory)
        self.max_faces = max_faces
        self.entries: dict[str, list[CatalogEntry]] = {}
        for name in _CATALOGS:
            path = self.directory / name
            if not path.exists():
                continue
            for entry in read_catalog(path):
                w, d, h = entry.size_m
                if max(w, d) > max_footprint_m or max(w, d, h) < min_size_m or h > 2.4:
                    continue
                self.entries.setdefault(entry.class_name, []).append(entry)
        self._archives: dict[str, zipfile.ZipFile] = {}
        self._cache: dict[str, FurnitureModel | None] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def classes(self) -> list[str]:
        return sorted(self.entries)

    def _archive(self, name: str) -> zipfile.ZipFile:
        if name not in self._archives:
            self._archives[name] = zipfile.ZipFile(self.directory / name)
        return self._archives[name]

    def load(self, entry: CatalogEntry) -> FurnitureModel | None:
        """Load, orient (z-up) and scale a model to its catalog size; None if unusable."""
        if entry.model_id in self._cache:
            return self._cache[entry.model_id]
        archive = self._archive(entry.catalog)
        folder, _, obj_name = entry.model_path.rpartition("/")
        files = {n[len(folder) + 1:]: archive.read(n) for n in archive.namelist()
                 if n.startswith(folder + "/") and not n.endswith("/")} if folder else {}
        model = None
        try:
            if obj_name in files:
                scene = trimesh.load(io.BytesIO(files[obj_name]), file_type="obj",
                                     resolver=_DictResolver(files), force="scene", process=False)
                model = self._to_model(entry, scene)
        except Exception:  # a broken model file is skipped, never fatal
            model = None
        self._cache[entry.model_id] = model
        return model

    def _to_model(self, entry: CatalogEntry, scene: trimesh.Scene) -> FurnitureModel | None:
        parts = []
        for geometry in scene.dump():
            if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
                continue
            colour = np.array([0.6, 0.6, 0.6])
            material = getattr(geometry.visual, "material", None)
            diffuse = getattr(material, "diffuse", None)
            if diffuse is not None:
                colour = np.asarray(diffuse[:3], dtype=float) / 255.0
            elif getattr(geometry.visual, "kind", None) == "face":
                colour = geometry.visual.face_colors[:, :3].mean(axis=0) / 255.0
            mesh = trimesh.Trimesh(_y_up_to_z_up(np.asarray(geometry.vertices, dtype=np.float64)),
                                   np.asarray(geometry.faces), process=False)
            parts.append((mesh, colour))
        if not parts or sum(len(m.faces) for m, _ in parts) > self.max_faces:
            return None
        lo = np.min([m.bounds[0] for m, _ in parts], axis=0)
        hi = np.max([m.bounds[1] for m, _ in parts], axis=0)
        extent = hi - lo
        if np.any(extent <= 1e-6):
            return None
        scale = np.asarray(entry.size_m) / extent
        centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        for mesh, _ in parts:
            mesh.vertices = (mesh.vertices - centre) * scale
        return FurnitureModel(entry.name, entry.class_name, parts, entry.source,
                              np.asarray(entry.size_m, dtype=float))

    def sample(self, class_name: str, rng: np.random.Generator) -> FurnitureModel:
        candidates = list(self.entries.get(class_name, []))
        if not candidates:
            raise KeyError(f"no catalog model of class {class_name!r}")
        for i in rng.permutation(len(candidates)):
            model = self.load(candidates[i])
            if model is not None:
                return model
        raise KeyError(f"no loadable catalog model of class {class_name!r}")


# --------------------------------------------------------------------------- procedural


def _box(size, centre) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=size)
    mesh.apply_translation(centre)
    return mesh


def _cylinder(radius, height, base_z, xy=(0.0, 0.0), sections=20) -> trimesh.Trimesh:
    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    mesh.apply_translation([xy[0], xy[1], base_z + height / 2])
    return mesh


class ProceduralLibrary(FurnitureLibrary):
    """Composites of boxes and cylinders, one recipe per class, sizes randomised."""

    kind = "procedural"

    def classes(self) -> list[str]:
        return ["chair", "table", "sofa", "bed", "cabinet", "bookshelf", "desk", "lamp", "television"]

    def sample(self, class_name: str, rng: np.random.Generator) -> FurnitureModel:
        u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
        wood = np.clip(np.array([0.55, 0.38, 0.22]) + rng.normal(0, 0.06, 3), 0, 1)
        fabric = np.clip(rng.uniform(0.15, 0.85, 3), 0, 1)
        metal = np.array([0.7, 0.7, 0.72])
        parts: list[tuple[trimesh.Trimesh, np.ndarray]] = []

        def legs(w, d, h, t, colour):
            for sx in (-1, 1):
                for sy in (-1, 1):
                    parts.append((_box([t, t, h], [sx * (w / 2 - t / 2), sy * (d / 2 - t / 2), h / 2]), colour))

        if class_name in ("table", "desk"):
            w, d, h = (u(1.0, 1.8), u(0.6, 1.0), u(0.70, 0.78)) if class_name == "table" else \
                (u(1.1, 1.6), u(0.55, 0.75), u(0.72, 0.76))
            parts.append((_box([w, d, 0.04], [0, 0, h - 0.02]), wood))
            legs(w, d, h - 0.04, 0.05, wood * 0.8)
            if class_name == "desk":
                parts.append((_box([0.4, d - 0.05, h - 0.1], [w / 2 - 0.22, 0, (h - 0.1) / 2]), wood * 0.9))
        elif class_name == "chair":
            w, d, seat = u(0.42, 0.52), u(0.42, 0.52), u(0.43, 0.48)
            parts.append((_box([w, d, 0.05], [0, 0, seat]), fabric))
            parts.append((_box([w, 0.05, u(0.40, 0.50)], [0, d / 2 - 0.025, seat + 0.25]), fabric * 0.9))
            legs(w, d, seat - 0.025, 0.035, metal)
        elif class_name == "sofa":
            w, d = u(1.6, 2.3), u(0.8, 0.95)
            parts.append((_box([w, d, 0.42], [0, 0, 0.21]), fabric))
            parts.append((_box([w, 0.2, 0.45], [0, d / 2 - 0.1, 0.42 + 0.225]), fabric * 0.9))
            for sx in (-1, 1):
                parts.append((_box([0.18, d, 0.25], [sx * (w / 2 - 0.09), 0, 0.42 + 0.125]), fabric * 0.85))
        elif class_name == "bed":
            w, d = u(1.4, 1.8), u(1.9, 2.1)
            parts.append((_box([w, d, 0.45], [0, 0, 0.225]), fabric))
            parts.append((_box([w, 0.06, 1.0], [0, d / 2 - 0.03, 0.5]), wood))
            parts.append((_box([w * 0.35, 0.35, 0.12], [-w * 0.22, d / 2 - 0.3, 0.51]), np.ones(3) * 0.9))
        elif class_name == "cabinet":
            w, d, h = u(0.6, 1.2), u(0.4, 0.6), u(0.8, 1.9)
            parts.append((_box([w, d, h], [0, 0, h / 2]), wood))
            parts.append((_box([w * 0.9, 0.02, h * 0.9], [0, -d / 2 - 0.01, h / 2]), wood * 1.15))
        elif class_name == "bookshelf":
            w, d, h = u(0.7, 1.2), u(0.28, 0.38), u(1.5, 2.0)
            for sx in (-1, 1):
                parts.append((_box([0.03, d, h], [sx * (w / 2 - 0.015), 0, h / 2]), wood))
            for k in range(5):
                parts.append((_box([w, d, 0.03], [0, 0, 0.015 + k * (h - 0.03) / 4]), wood))
            parts.append((_box([w, 0.01, h], [0, d / 2 - 0.005, h / 2]), wood * 0.7))
        elif class_name == "lamp":
            h = u(0.35, 0.6)
            parts.append((_cylinder(0.08, 0.03, 0.0), metal))
            parts.append((_cylinder(0.012, h * 0.7, 0.03), metal))
            cone = trimesh.creation.cone(radius=0.15, height=h * 0.35, sections=20)
            cone.apply_translation([0, 0, h * 0.65])
            parts.append((cone, np.clip(fabric + 0.3, 0, 1)))
        elif class_name == "television":
            w = u(0.6, 1.0)
            parts.append((_box([w, 0.05, w * 0.58], [0, 0, 0.08 + w * 0.29]), np.ones(3) * 0.08))
            parts.append((_box([0.25, 0.18, 0.02], [0, 0, 0.01]), np.ones(3) * 0.2))
            parts.append((_box([0.06, 0.04, 0.08], [0, 0, 0.05]), np.ones(3) * 0.2))
        else:
            raise KeyError(f"no procedural recipe for class {class_name!r}")
        mesh = trimesh.util.concatenate([m for m, _ in parts])
        lo, hi = mesh.bounds
        shift = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
        for m, _ in parts:
            m.apply_translation(shift)
        return FurnitureModel(f"procedural {class_name}", class_name, parts, "procedural",
                              hi - lo)


def furniture_library(prefer: str = "auto", directory: Path = SH3D_DIR) -> FurnitureLibrary:
    """The Sweet Home 3D catalogs when installed (``prefer='auto'`` or ``'sweethome3d'``),
    otherwise (or with ``prefer='procedural'``) the procedural library."""
    if prefer not in ("auto", "sweethome3d", "procedural"):
        raise ValueError(f"unknown furniture source {prefer!r}")
    if prefer != "procedural":
        library = CatalogLibrary(directory) if Path(directory).is_dir() else None
        if library is not None and len(library) > 0:
            return library
        if prefer == "sweethome3d":
            raise FileNotFoundError(
                f"no Sweet Home 3D furniture catalogs in {directory}; install the Debian package "
                "sweethome3d-furniture (make setup does) or use procedural furniture")
    return ProceduralLibrary()


def iter_classes(library: FurnitureLibrary, wanted: Iterable[str]) -> list[str]:
    have = set(library.classes())
    return [c for c in wanted if c in have]
