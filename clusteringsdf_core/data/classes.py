"""The semantic class table used by scenes, segmenters and metrics.

The ScanNet-style reduced table of Panoptic Lifting / Contrastive Lift / ClusteringSDF
evaluations: 21 classes plus void (id 0). Wall, floor and ceiling are "stuff" (no
instances); every other class is a "thing". Dataset readers map their own label
spaces (NYU40, ScanNet raw categories, Replica classes) into this table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SemanticClass", "ClassTable", "SCANNET_REDUCED", "VOID", "load_class_table"]

VOID = 0


@dataclass(frozen=True)
class SemanticClass:
    id: int
    name: str
    is_thing: bool


class ClassTable:
    """An ordered table of classes; id 0 is always void."""

    def __init__(self, classes: list[SemanticClass]):
        ids = [c.id for c in classes]
        if ids != list(range(len(classes))) or classes[0].name != "void":
            raise ValueError("class ids must be 0..N-1 with 0 = void")
        self.classes = list(classes)
        self._by_name = {c.name: c for c in classes}

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, class_id: int) -> SemanticClass:
        return self.classes[class_id]

    def id_of(self, name: str) -> int:
        try:
            return self._by_name[name].id
        except KeyError:
            raise KeyError(f"unknown class {name!r}; known: {sorted(self._by_name)}") from None

    def name_of(self, class_id: int) -> str:
        return self.classes[class_id].name if 0 <= class_id < len(self.classes) else "unknown"

    def object_class_name(self, class_id: int) -> str:
        """The class name of a reconstructed object: ``unknown`` for id 0 (no semantic
        labels named it; an object is never void) and for ids outside the table."""
        return "unknown" if class_id == VOID else self.name_of(class_id)

    @property
    def thing_ids(self) -> list[int]:
        return [c.id for c in self.classes if c.is_thing]

    @property
    def stuff_ids(self) -> list[int]:
        return [c.id for c in self.classes if c.id != VOID and not c.is_thing]

    def is_thing_lut(self) -> np.ndarray:
        """Boolean lookup table indexed by class id."""
        return np.array([c.is_thing for c in self.classes], dtype=bool)

    def to_list(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "is_thing": c.is_thing} for c in self.classes]

    @classmethod
    def from_list(cls, items: list[dict]) -> "ClassTable":
        return cls([SemanticClass(int(d["id"]), str(d["name"]), bool(d["is_thing"])) for d in items])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassTable) and self.classes == other.classes

    def __hash__(self) -> int:
        return hash(tuple(self.classes))


def load_class_table(path: str | Path) -> ClassTable:
    """A class table from a YAML or JSON file: a list of classes in id order (or a
    mapping with that list under ``classes``), each ``{name, is_thing}`` (``thing`` is
    accepted for ``is_thing``; ``id``, when given, must equal the position). Entry 0
    must be ``void``. A plain name stands for a thing class. Raises ValueError naming
    the file and the entry that is wrong."""
    import yaml

    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"class table {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        tree = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"class table {path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    items = tree.get("classes") if isinstance(tree, dict) else tree
    if not isinstance(items, list) or not items:
        raise ValueError(f"class table {path}: expected a list of classes (or 'classes: [...]')")
    classes = []
    for position, item in enumerate(items):
        where = f"class table {path}, entry {position}"
        if isinstance(item, str):
            item = {"name": item, "is_thing": position != VOID}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"{where}: expected a name or {{name, is_thing}}, got {item!r}")
        unknown = set(item) - {"id", "name", "is_thing", "thing"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        if "id" in item and item["id"] != position:
            raise ValueError(f"{where}: id {item['id']!r} is not its position (ids are 0..N-1 in order)")
        thing = item.get("is_thing", item.get("thing", position != VOID))
        if not isinstance(thing, bool):
            raise ValueError(f"{where}: is_thing must be true or false, got {thing!r}")
        classes.append(SemanticClass(position, item["name"], thing))
    if classes[0].name != "void" or classes[0].is_thing:
        raise ValueError(f"class table {path}: entry 0 must be void (not a thing), got {items[0]!r}")
    names = [c.name for c in classes]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(f"class table {path}: class {duplicate!r} appears twice")
    return ClassTable(classes)


_STUFF = ("wall", "floor", "ceiling")
_THINGS = ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
           "desk", "curtain", "refrigerator", "television", "toilet", "sink", "bathtub", "lamp",
           "otherfurniture")

#: void + 3 stuff + 18 thing classes = 21 classes and void.
SCANNET_REDUCED = ClassTable(
    [SemanticClass(0, "void", False)]
    + [SemanticClass(1 + i, name, False) for i, name in enumerate(_STUFF)]
    + [SemanticClass(1 + len(_STUFF) + i, name, True) for i, name in enumerate(_THINGS)]
)
