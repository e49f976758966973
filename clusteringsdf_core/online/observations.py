"""How many key frames see an object (the ``num_observations`` of a published object)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ViewSummary", "count_observations", "view_summaries"]


@dataclass(frozen=True)
class ViewSummary:
    """What observation counting needs of a key frame (CPU, small)."""

    K: np.ndarray               # (3, 3), core pixel convention
    T_world_cam: np.ndarray     # (4, 4)
    width: int
    height: int
    depth_small: np.ndarray | None   # (ceil(H/stride), ceil(W/stride)) metres, 0 = unknown
    stride: int


def view_summaries(views, max_side: int = 64) -> list[ViewSummary]:
    """:class:`ViewSummary` of the trainer's views (depth subsampled to ``max_side``)."""
    out = []
    for view in views:
        stride = max(1, math.ceil(max(view.width, view.height) / max_side))
        depth = None
        if view.depth_m is not None:
            depth = view.depth_m.reshape(view.height, view.width)[::stride, ::stride].cpu().numpy()
        out.append(ViewSummary(view.K.cpu().numpy().astype(np.float64),
                               view.T_world_cam.cpu().numpy().astype(np.float64),
                               view.width, view.height, depth, stride))
    return out


def count_observations(vertices: np.ndarray, views: Sequence[ViewSummary], *,
                       near_m: float = 0.05, depth_tolerance_m: float = 0.15,
                       samples: int = 100, min_visible_share: float = 0.1) -> int:
    """Key frames that see an object: at least ``min_visible_share`` of sampled mesh
    vertices project into the image, in front of the camera and not behind the measured
    depth (where the view has depth)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(vertices) == 0 or not views:
        return 0
    pick = np.linspace(0, len(vertices) - 1, min(samples, len(vertices))).astype(np.int64)
    pts = vertices[pick]
    seen = 0
    for view in views:
        R, t = view.T_world_cam[:3, :3], view.T_world_cam[:3, 3]
        cam = (pts - t) @ R
        z = cam[:, 2]
        front = z > near_m
        zs = np.where(front, z, 1.0)
        u = view.K[0, 0] * cam[:, 0] / zs + view.K[0, 2]
        v = view.K[1, 1] * cam[:, 1] / zs + view.K[1, 2]
        inside = front & (u >= 0) & (u < view.width) & (v >= 0) & (v < view.height)
        if view.depth_small is not None and inside.any():
            ui = (np.floor(u[inside]).astype(np.int64) // view.stride)
            vi = (np.floor(v[inside]).astype(np.int64) // view.stride)
            d = view.depth_small[np.clip(vi, 0, view.depth_small.shape[0] - 1),
                                 np.clip(ui, 0, view.depth_small.shape[1] - 1)]
            ok = (d <= 0) | (z[inside] <= d + depth_tolerance_m)
            inside[np.flatnonzero(inside)[~ok]] = False
        if inside.sum() >= max(1, min_visible_share * len(pts)):
            seen += 1
    return seen
