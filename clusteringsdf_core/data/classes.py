"""The semantic class table used by scenes, segmenters and metrics.

The ScanNet-style reduced table of Panoptic Lifting / Contrastive Lift / ClusteringSDF
evaluations: 21 classes plus void (id 0). Wall, floor and ceiling are "stuff" (no
instances); every other class is a "thing". Dataset readers map their own label
spaces (NYU40, ScanNet raw categories, Replica classes) into this table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SemanticClass", "ClassTable", "SCANNET_REDUCED", "VOID"]

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
