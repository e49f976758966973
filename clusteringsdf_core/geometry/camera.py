"""The pinhole camera, in NumPy: pixels to directions, depths to points, points to pixels.

``u``, ``v`` are continuous image coordinates (pixel ``i``'s centre is ``i + 0.5``);
``K`` is an :class:`~clusteringsdf_core.data.frame.Intrinsics` (or anything with
``fx, fy, cx, cy``); ``T`` a 4x4 camera-to-world pose. The torch form used in training
is :func:`clusteringsdf_core.render.rays.pixel_rays`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["camera_directions", "camera_points", "backproject", "project", "world_rays", "look_at"]


def camera_directions(u: np.ndarray, v: np.ndarray, K) -> np.ndarray:
    """(..., 3) camera-frame directions with z = 1 through image points ``(u, v)``."""
    return np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, dtype=np.result_type(u, 1.0))], -1)


def camera_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, K) -> np.ndarray:
    """(..., 3) camera-frame points at z-depth ``z`` behind image points ``(u, v)``."""
    return np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], -1)


def backproject(u: np.ndarray, v: np.ndarray, z: np.ndarray, K, T: np.ndarray) -> np.ndarray:
    """(..., 3) world points at z-depth ``z`` behind image points ``(u, v)`` of the
    camera at pose ``T`` (float64)."""
    T = np.asarray(T, dtype=np.float64)
    return camera_points(u, v, z, K) @ T[:3, :3].T + T[:3, 3]


def project(points_cam: np.ndarray, K, min_z: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels hit by camera-frame points: (column, row) integer indices (floor of the
    continuous coordinates), and ``front``, the points more than ``min_z`` in front of
    the camera (the others get the indices of z = 1 and must be masked by the caller)."""
    z = points_cam[:, 2]
    front = z > min_z
    zs = np.where(front, z, 1.0)
    u = np.floor(points_cam[:, 0] / zs * K.fx + K.cx).astype(np.int64)
    v = np.floor(points_cam[:, 1] / zs * K.fy + K.cy).astype(np.int64)
    return u, v, front


def world_rays(K, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (H*W, 3) in the world of the rays through the pixel
    centres of the ``K.width x K.height`` image, row-major."""
    uu, vv = np.meshgrid(np.arange(K.width, dtype=np.float64) + 0.5, np.arange(K.height, dtype=np.float64) + 0.5)
    T = np.asarray(T_world_cam, dtype=np.float64)
    dirs = camera_directions(uu, vv, K).reshape(-1, 3) @ T[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.broadcast_to(T[:3, 3], dirs.shape).copy(), dirs


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose of an optical frame (x right, y down, z forward) at ``eye``
    looking at ``target`` in a z-up world."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T
