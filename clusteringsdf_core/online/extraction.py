"""The extraction side of the online engine: one snapshot -> tracked objects, and the
map written to disk. The engine's extractor thread (or the caller, without threads)
runs :func:`extract_tracked` on :class:`ExtractJob` s; the newest :class:`ObjectsResult`
is what the node publishes."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from clusteringsdf_core.config import save_yaml
from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.extract import ObjectTracker, TrackedObject, export_objects, extract_objects
from clusteringsdf_core.online.observations import count_observations

__all__ = ["ObjectsResult", "ExtractJob", "extract_tracked", "write_map"]


@dataclass(frozen=True)
class ObjectsResult:
    """One extraction: tracked objects (read-only by convention) of a model snapshot."""

    seq: int
    iteration: int
    stamp_ns: int                    # time of the snapshot (the engine's clock)
    objects: tuple                   # TrackedObject, sorted by id
    seconds: float                   # extraction time


class ExtractJob(NamedTuple):
    """A snapshot waiting for the extractor thread."""

    snapshot: Any
    views: list
    device: str
    covers: int | None                 # extract_now requests it serves (None: none)
    future: concurrent.futures.Future | None   # set for saves: a caller waits on it
    requested: bool                    # a save or extract_now: new objects publish at once

    @property
    def waited_on(self) -> bool:
        return self.future is not None


def extract_tracked(snapshot, views, device: str, tracker: ObjectTracker, stamp_s: float, *,
                    live: bool, confirm_new: bool) -> list[TrackedObject]:
    """The objects of ``snapshot`` (at ``extract.live_resolution`` when ``live``, else
    ``extract.resolution``) through ``tracker``, with the key frames ``views``
    (:func:`view_summaries`) that see each counted as its observations. With
    ``confirm_new`` (saves and requested extractions) new objects get ids at once;
    periodic extractions wait for repeated sightings (:class:`ObjectTracker`)."""
    model = snapshot.model(device)
    ecfg = snapshot.config.extract
    extracted = extract_objects(model, ecfg, snapshot.channel_classes, snapshot.channel_confidence,
                                resolution=ecfg.live_resolution if live else ecfg.resolution,
                                class_votes=snapshot.class_votes)
    tracked = tracker.update(extracted, stamp=stamp_s, confirm_new=confirm_new)
    s = snapshot.length_scale          # the room values of count_observations, scaled as the model's
    return [dataclasses.replace(t, num_observations=count_observations(
        t.object.surface.vertices, views, near_m=0.05 * s, depth_tolerance_m=0.15 * s)) for t in tracked]


def write_map(out_dir: Path, result: ObjectsResult, snapshot, classes: ClassTable, *, bounds_m,
              num_views: int | None, counters: dict) -> Path:
    """Meshes, ``objects.json``, ``config.yaml`` and ``map.json`` (iteration, stamp, bounds,
    key frames, object ids, counters) of one extraction into ``out_dir``."""
    export_objects(list(result.objects), out_dir, classes, mesh_format=snapshot.config.extract.export_format,
                   iteration=snapshot.iteration)
    save_yaml(snapshot.config, out_dir / "config.yaml")
    (out_dir / "map.json").write_text(json.dumps({
        "iteration": snapshot.iteration, "stamp_ns": result.stamp_ns, "bounds_m": bounds_m, "views": num_views,
        "objects": [t.id for t in result.objects], "counters": counters,
    }, indent=1))
    return out_dir
