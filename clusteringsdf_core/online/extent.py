"""The volume a stream's map covers, estimated from the frames' depth."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.geometry.camera import backproject

__all__ = ["estimate_bounds", "growth_bounds", "frame_growth", "bootstrap_bounds", "BOUNDS_MARGIN_XY_M", "BOUNDS_MARGIN_Z_M", "RGB_ONLY_REACH_M"]

#: Margins added to the bounds seen in the bootstrap frames (metres): horizontal, vertical.
#: Small, because the map grows when later frames see past it (:func:`growth_bounds`):
#: the inverted-box room prior puts its walls on the box, and walls far behind the real
#: ones slowed the geometry down (small streamed room, all 20 frames given at once:
#: median depth error 1.19 m after 400 iterations with 0.5 / 0.25 m margins, 0.06 m with
#: 0.1 m; 2 m margins had cost 44 PQ^scene points on the demo scene).
BOUNDS_MARGIN_XY_M = 0.1
BOUNDS_MARGIN_Z_M = 0.1
#: RGB-only bounds: how far in front of the cameras the scene is assumed to reach.
RGB_ONLY_REACH_M = 3.0


def estimate_bounds(frames: Sequence[Frame], *, depth_min_m: float = 0.1, depth_max_m: float = 10.0,
                    margin_xy_m: float = BOUNDS_MARGIN_XY_M, margin_z_m: float = BOUNDS_MARGIN_Z_M,
                    rgb_only_reach_m: float = RGB_ONLY_REACH_M, max_points_per_frame: int = 5000,
                    ) -> np.ndarray:
    """(2, 3) scene bounds [min, max] in the map frame from a few frames.

    The frames' valid depth (``depth_min_m``..``depth_max_m``) back-projected into the
    map frame, plus the camera centres; frames without depth add their frustum up to
    ``rgb_only_reach_m``. The 0.5 / 99.5 percentiles are expanded by the margins.
    """
    if not frames:
        raise ValueError("no frames to estimate the scene bounds from")
    points, centres = [], []
    for frame in frames:
        T = np.asarray(frame.T_world_cam, dtype=np.float64)
        K = frame.intrinsics
        centres.append(T[:3, 3])
        depth = frame.depth_m
        if depth is not None:
            v, u = np.nonzero((depth >= depth_min_m) & (depth <= depth_max_m) & np.isfinite(depth))
            if len(v) > max_points_per_frame:
                pick = np.linspace(0, len(v) - 1, max_points_per_frame).astype(np.int64)
                v, u = v[pick], u[pick]
            z = depth[v, u].astype(np.float64)
        else:  # image corners at the assumed reach
            u = np.array([0, K.width - 1, 0, K.width - 1])
            v = np.array([0, 0, K.height - 1, K.height - 1])
            z = np.full(4, rgb_only_reach_m)
        if len(z):
            points.append(backproject(u + 0.5, v + 0.5, z, K, T))
    centres = np.stack(centres)
    lo, hi = centres.min(0), centres.max(0)
    if points:  # outlier-robust extent of the surfaces, always holding the cameras
        pts = np.concatenate(points)
        lo = np.minimum(lo, np.percentile(pts, 0.5, axis=0))
        hi = np.maximum(hi, np.percentile(pts, 99.5, axis=0))
    margin = np.array([margin_xy_m, margin_xy_m, margin_z_m])
    return np.stack([lo - margin, hi + margin])


def growth_bounds(current_m: np.ndarray, frame_bounds_m: np.ndarray, *,
                  margin_xy_m: float = BOUNDS_MARGIN_XY_M, margin_z_m: float = BOUNDS_MARGIN_Z_M,
                  max_side_m: float = 0.0) -> tuple[np.ndarray | None, bool]:
    """The bounds a map of ``current_m`` should grow to for a frame whose own bounds
    (:func:`estimate_bounds` of it, margins included) are ``frame_bounds_m``.

    A side moves only when the frame's surfaces come closer to it than half the margin
    (so a map is not regrown for every frame that touches its margin) and then takes the
    frame's bounds with the full margin. A side that would make the map longer than
    ``max_side_m`` (> 0) on its axis stays. Returns (new bounds or None, capped).
    """
    cur = np.asarray(current_m, np.float64).reshape(2, 3)
    fb = np.asarray(frame_bounds_m, np.float64).reshape(2, 3)
    half_margin = np.array([margin_xy_m, margin_xy_m, margin_z_m]) / 2
    new = cur.copy()
    low, high = fb[0] < cur[0] - half_margin, fb[1] > cur[1] + half_margin
    new[0, low], new[1, high] = fb[0, low], fb[1, high]
    capped = False
    if max_side_m > 0:
        for axis in range(3):
            if new[1, axis] - new[0, axis] > max_side_m + 1e-9:
                capped = True
                new[:, axis] = cur[:, axis]
    if np.allclose(new, cur):
        return None, capped
    return new, capped


def _margins(length_scale: float) -> dict[str, float]:
    """The room margins scaled as a map's scene lengths are."""
    return {"margin_xy_m": BOUNDS_MARGIN_XY_M * length_scale, "margin_z_m": BOUNDS_MARGIN_Z_M * length_scale}


def frame_growth(current_m: np.ndarray, frame: Frame, config, length_scale: float, *,
                 max_side_m: float = 0.0) -> tuple[np.ndarray | None, bool]:
    """:func:`growth_bounds` for a key frame of a map trained with ``config`` (its resolved
    tree): the frame's bounds padded by ``render.bounds_padding_m`` as the first box was,
    the margins scaled by the map's ``length_scale`` as its other scene lengths were."""
    dc, pad = config.data, config.render.bounds_padding_m
    margins = _margins(length_scale)
    seen = estimate_bounds([frame], depth_min_m=dc.depth_min_m, depth_max_m=dc.depth_max_m, **margins)
    return growth_bounds(current_m, seen + np.array([[-pad], [pad]]), max_side_m=max_side_m, **margins)


def bootstrap_bounds(frames: Sequence[Frame], config) -> tuple[np.ndarray, object, float]:
    """A map's first bounds from its first frames, with its tree resolved for them
    (:func:`~clusteringsdf_core.config.lengths.resolve_lengths`): ``(bounds, resolved
    config, factor)``. The factor comes from the bounds with the room margins; the
    bounds returned carry the margins scaled by it, like the map's other lengths."""
    from clusteringsdf_core.config.lengths import resolve_lengths

    dc = config.data
    bounds = estimate_bounds(frames, depth_min_m=dc.depth_min_m, depth_max_m=dc.depth_max_m)
    resolved, factor = resolve_lengths(config, bounds)
    if factor != 1.0:
        bounds = estimate_bounds(frames, depth_min_m=dc.depth_min_m, depth_max_m=dc.depth_max_m,
                                 **_margins(factor))
    return bounds, resolved, factor
