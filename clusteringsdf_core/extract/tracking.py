"""Stable object ids while training goes on.

:class:`ObjectTracker` keeps object ids stable between extractions (channels can
change their contents): new objects are matched to the previous ones by 3D box
overlap (Hungarian assignment), unmatched ones get fresh ids that are never reused;
an object gets its id after ``extract.confirm_after`` consecutive extractions and
loses it after ``extract.drop_after`` misses. :meth:`ObjectTracker.state_dict` stores
the tracks (with their meshes) so that a map loaded later goes on with the same ids.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.optimize import linear_sum_assignment

from clusteringsdf_core.config import ExtractConfig
from clusteringsdf_core.extract.objects import ExtractedObject, box_iou_3d

__all__ = ["ObjectTracker", "TrackedObject"]


_MESHES = ("mesh", "shell")


def _object_state(obj: ExtractedObject) -> dict:
    state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in _MESHES}
    state.update(vertices=np.asarray(obj.mesh.vertices, np.float64), faces=np.asarray(obj.mesh.faces, np.int64))
    if obj.shell is not None:
        state.update(shell_vertices=np.asarray(obj.shell.vertices, np.float64),
                     shell_faces=np.asarray(obj.shell.faces, np.int64))
    return state


def _object_from_state(state: dict) -> ExtractedObject:
    """(States written before objects had shells load with ``shell`` None.)"""
    arrays = ("vertices", "faces", "shell_vertices", "shell_faces")
    fields = {k: v for k, v in state.items() if k not in arrays}
    shell = (trimesh.Trimesh(state["shell_vertices"], state["shell_faces"], process=False)
             if "shell_vertices" in state else None)
    return ExtractedObject(mesh=trimesh.Trimesh(state["vertices"], state["faces"], process=False),
                           shell=shell, **fields)


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
    # update() and the state methods may run on different threads (extraction, autosave)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.confirm_after < 1 or self.drop_after < 1:
            raise ValueError(f"ObjectTracker: confirm_after ({self.confirm_after}) and drop_after "
                             f"({self.drop_after}) must be at least 1")

    @classmethod
    def from_config(cls, config: ExtractConfig, **overrides) -> "ObjectTracker":
        fields = {"match_iou": config.match_iou, "confirm_after": config.confirm_after,
                  "drop_after": config.drop_after}
        return cls(**{**fields, **overrides})

    def state_dict(self) -> dict:
        """Ids, tracks (geometry included) and candidates: plain Python and numpy."""
        def track(t: TrackedObject) -> dict:
            return {**{f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name != "object"},
                    "object": _object_state(t.object)}

        with self._lock:
            objects, candidates, next_id = list(self.objects.values()), list(self.candidates), self.next_id
        return {"next_id": next_id, "objects": [track(t) for t in objects],
                "candidates": [{"object": _object_state(c.object), "first_seen": c.first_seen, "hits": c.hits}
                               for c in candidates]}

    def load_state_dict(self, state: dict) -> None:
        """Take the tracks of :meth:`state_dict`. Ids stay unique: the next new id is
        past both this tracker's and the state's."""
        objects = {}
        for t in state["objects"]:
            fields = {k: v for k, v in t.items() if k != "object"}
            objects[int(t["id"])] = TrackedObject(object=_object_from_state(t["object"]), **fields)
        candidates = [_Candidate(_object_from_state(c["object"]), float(c["first_seen"]), int(c["hits"]))
                      for c in state["candidates"]]
        with self._lock:
            self.next_id = max(self.next_id, int(state["next_id"]), max(objects, default=0) + 1)
            self.objects, self.candidates = objects, candidates

    def published(self) -> list[TrackedObject]:
        """The objects with ids, by id (as the last :meth:`update` returned them)."""
        with self._lock:
            return [self.objects[i] for i in sorted(self.objects)]

    def update(self, extracted: list[ExtractedObject], stamp: float, *,
               confirm_new: bool = False) -> list[TrackedObject]:
        """Match ``extracted`` to the known objects; the published objects, by id.

        ``confirm_new`` gives every unmatched object an id at once (a saved map or an
        offline extraction, where no later extraction will confirm it)."""
        with self._lock:
            return self._update(extracted, stamp, confirm_new)

    def _update(self, extracted: list[ExtractedObject], stamp: float, confirm_new: bool) -> list[TrackedObject]:
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
