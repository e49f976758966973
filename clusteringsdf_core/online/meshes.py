"""Meshes small enough to publish."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["decimate_mesh", "MAX_MESH_FACES"]

#: Faces of a published object mesh at most (vertex clustering beyond).
MAX_MESH_FACES = 5000


def decimate_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int = MAX_MESH_FACES,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_faces`` triangles: vertex clustering on a grid that coarsens until the
    mesh fits (dependency-free; shapes stay recognisable for planners and RViz)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) <= max_faces:
        return vertices, faces
    tri = vertices[faces]
    area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                                      axis=1).sum())
    # A surface of area A on a grid of cell h keeps about 2 A / h^2 triangles.
    cell = max(math.sqrt(2.0 * area / max_faces), 1e-9)
    origin = vertices.min(0)
    for _ in range(60):
        keys = np.floor((vertices - origin) / cell).astype(np.int64)
        dims = keys.max(0) + 1
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
        _, cluster, counts = np.unique(flat, return_inverse=True, return_counts=True)
        sums = np.zeros((len(counts), 3))
        np.add.at(sums, cluster, vertices)
        new_faces = cluster[faces]
        keep = ((new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2])
                & (new_faces[:, 0] != new_faces[:, 2]))
        new_faces = new_faces[keep]
        s = np.sort(new_faces, axis=1)
        n = len(counts)
        _, first = np.unique((s[:, 0] * n + s[:, 1]) * n + s[:, 2], return_index=True)
        new_faces = new_faces[np.sort(first)]   # duplicates removed, order kept
        if len(new_faces) <= max_faces:
            used, remap = np.unique(new_faces, return_inverse=True)
            return (sums / counts[:, None])[used], remap.reshape(-1, 3)
        cell *= 1.25
    raise ValueError(f"could not decimate a mesh of {len(faces)} faces to {max_faces}")
