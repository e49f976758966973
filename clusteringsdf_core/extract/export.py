"""Objects on disk: one mesh per object, a scene mesh coloured by object, ``objects.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.extract.tracking import TrackedObject

__all__ = ["export_objects"]


def export_objects(tracked: list[TrackedObject], out_dir: str | Path, classes: ClassTable,
                   *, mesh_format: str = "ply", iteration: int = 0) -> Path:
    """Write one mesh per object (``meshes/object_<id>``: closed or shell, as extracted),
    the scene mesh coloured by object (``scene_objects``: the objects' shells, i.e. the
    reconstructed surface, one colour per id) and ``objects.json``."""
    from clusteringsdf_core.viz import label_colours

    out = Path(out_dir)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    records, coloured = [], []
    for t in tracked:
        o = t.object
        name = f"meshes/object_{t.id:04d}.{mesh_format}"
        o.mesh.export(out / name)
        m = o.surface.copy()
        m.visual.vertex_colors = np.concatenate([np.tile(label_colours(np.array([t.id]))[0], (len(m.vertices), 1)),
                                                 np.full((len(m.vertices), 1), 255)], axis=1).astype(np.uint8)
        coloured.append(m)
        records.append({
            "id": t.id, "class_id": o.class_id, "class_name": classes.object_class_name(o.class_id),
            "confidence": round(o.confidence, 4), "channel": o.channel, "part": o.part,
            "centroid": np.round(o.centroid, 4).tolist(),
            "bbox_pose": np.round(o.box_pose, 5).tolist(), "bbox_size": np.round(o.box_size, 4).tolist(),
            "volume_m3": round(o.volume, 5), "watertight": bool(o.watertight),
            "num_faces": int(len(o.mesh.faces)), "mesh": name,
            "first_seen": t.first_seen, "last_updated": t.last_updated,
        })
    if coloured:
        trimesh.util.concatenate(coloured).export(out / f"scene_objects.{mesh_format}")
    path = out / "objects.json"
    path.write_text(json.dumps({"iteration": iteration, "objects": records}, indent=1))
    return path
