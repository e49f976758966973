"""A scene's extent from depth maps: world points on a regular pixel lattice of each
depth map, and their axis-aligned box (optionally outlier-robust by percentiles).

The readers bound a dataset with it (a few evenly spaced frames), the TSDF fusion its
volume. The online engine's map extent (:func:`clusteringsdf_core.online.extent.estimate_bounds`)
is another job: it also holds the cameras and the frustums of frames without depth.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from clusteringsdf_core.geometry.camera import backproject

__all__ = ["depth_lattice", "bounds_from_depth"]


def depth_lattice(depth: np.ndarray, K, T: np.ndarray, *, step: int, min_depth_m: float = 0.0,
                  max_depth_m: float = math.inf) -> np.ndarray:
    """(N, 3) world points of every ``step``-th pixel (rows and columns) of ``depth`` whose
    depth is finite and in (``min_depth_m``, ``max_depth_m``]. ``K`` may describe the
    camera at another resolution than ``depth``: it is rescaled to the depth map."""
    h, w = depth.shape
    if (K.width, K.height) != (w, h):
        K = K.scaled(w, h)
    v, u = np.mgrid[0:h:step, 0:w:step]
    z = depth[v, u].astype(np.float64)
    ok = np.isfinite(z) & (z > min_depth_m) & (z <= max_depth_m)
    return backproject(u[ok] + 0.5, v[ok] + 0.5, z[ok], K, T)


def bounds_from_depth(samples: Iterable[tuple[np.ndarray | None, object, np.ndarray]], *,
                      min_depth_m: float = 0.0, max_depth_m: float = 10.0, pixels_per_frame: int = 4800,
                      step: int | None = None, percentile: float = 0.0) -> np.ndarray | None:
    """World AABB ``[[min xyz], [max xyz]]`` of the back-projected depth of some frames.

    ``samples`` yields ``(depth_m, intrinsics, T_world_cam)`` (a None depth is skipped).
    Each depth map is read on a lattice of every ``step``-th pixel, by default the step
    that gives about ``pixels_per_frame`` pixels (every pixel for small images); depths
    outside (``min_depth_m``, ``max_depth_m``] or not finite are dropped (sensor
    outliers). ``percentile`` > 0 takes the ``percentile`` / ``100 - percentile`` per axis
    instead of the extremes. Returns None when no valid depth was seen.
    """
    points = []
    for depth, K, T in samples:
        if depth is None:
            continue
        h, w = depth.shape
        stride = step if step is not None else max(1, int(np.sqrt(h * w / max(pixels_per_frame, 1))))
        pts = depth_lattice(depth, K, T, step=stride, min_depth_m=min_depth_m, max_depth_m=max_depth_m)
        if len(pts):
            points.append(pts)
    if not points:
        return None
    p = np.concatenate(points)
    if percentile > 0:
        return np.stack([np.percentile(p, percentile, axis=0), np.percentile(p, 100 - percentile, axis=0)])
    return np.stack([p.min(0), p.max(0)])
