"""TSDF fusion of depth frames and marching cubes: a coloured scene mesh without any network.

A dense truncated signed distance volume (Curless & Levoy 1996; KinectFusion's
projective distance) over an axis-aligned box of the world. Each frame updates only
the voxels near its observed surface: the depth pixels (every
``candidate_pixel_stride``-th) are swept along their rays over +-truncation, the
voxels they pass through are the frame's candidates, and each candidate takes the
projective SDF ``depth(pixel) - z_cam(voxel)`` of the pixel it projects to, clipped
to [-1, 1] in truncation units, in a running weighted average (weight 1 per
observation). Unobserved voxels keep weight 0 and never produce surface: marching
cubes runs on the whole volume with unobserved voxels set to +1, and every vertex
on a cube edge that touches an unobserved voxel, or that joins two clipped values
(a depth discontinuity, not a surface), is dropped with its faces.

Sign convention: positive in free space, negative behind surfaces; mesh normals
point into free space (towards the cameras).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar, Iterable

import numpy as np

from clusteringsdf_core.config import ConfigError, Section, param
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.geometry.bounds import bounds_from_depth
from clusteringsdf_core.geometry.camera import camera_points, project

__all__ = ["TSDFConfig", "TSDFVolume", "fuse_frames", "reconstruct_mesh"]


@dataclass(frozen=True)
class TSDFConfig(Section):
    """TSDF fusion and meshing parameters."""

    name: ClassVar[str] = "tsdf"

    voxel_size_m: float = param(0.03, "voxel edge length, metres", min=0.001, scene_length=True)
    truncation_voxels: float = param(4.0, "truncation distance in voxels (SDF values are "
                                     "clipped to +-truncation)", min=1.0)
    min_depth_m: float = param(0.1, "depth below this is ignored, metres", min=0.0)
    max_depth_m: float = param(8.0, "depth above this is ignored, metres", min=0.0,
                               min_exclusive=True)
    frame_stride: int = param(1, "fuse every n-th frame", min=1)
    candidate_pixel_stride: int = param(0, "pixel stride when finding the voxels near a "
                                        "frame's surface; 0 = automatic: the largest stride "
                                        "whose footprint at the frame's 90th-percentile depth "
                                        "is at most one voxel (stride 2 is ~4x faster than 1)",
                                        min=0)
    bounds_margin_m: float = param(0.1, "margin added around the scene bounds, metres", min=0.0,
                                   scene_length=True)
    integrate_color: bool = param(True, "average the RGB colour per voxel (vertex colours)")
    min_weight: float = param(1.0, "voxels observed fewer times are treated as unobserved "
                              "when meshing", min=0.0)
    max_voxels: int = param(80_000_000, "refuse volumes larger than this (memory guard)", min=1)

    def validate(self) -> None:
        if self.max_depth_m <= self.min_depth_m:
            raise ConfigError("tsdf.max_depth_m", f"must be > tsdf.min_depth_m ({self.min_depth_m})")

    @property
    def truncation_m(self) -> float:
        return self.truncation_voxels * self.voxel_size_m


class TSDFVolume:
    """A dense TSDF + weight (+ colour) grid; voxel (i, j, k) is centred at
    ``origin + voxel_size * (i, j, k)`` in the world."""

    def __init__(self, bounds: np.ndarray, voxel_size_m: float, truncation_m: float, *,
                 integrate_color: bool = True, max_voxels: int = 80_000_000):
        bounds = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
        if not np.all(bounds[1] > bounds[0]):
            raise ValueError(f"empty bounds {bounds.tolist()}")
        self.voxel_size = float(voxel_size_m)
        self.truncation = float(truncation_m)
        self.origin = bounds[0]
        self.shape = tuple(int(s) for s in np.ceil((bounds[1] - bounds[0]) / self.voxel_size) + 1)
        count = int(np.prod(self.shape, dtype=np.int64))
        if count > max_voxels:
            raise ValueError(f"TSDF volume of {self.shape} = {count} voxels exceeds max_voxels="
                             f"{max_voxels}; use a larger voxel size or tighter bounds")
        self.tsdf = np.ones(count, dtype=np.float32)       # flat, C order over self.shape
        self.weight = np.zeros(count, dtype=np.float32)
        self.color = np.zeros((count, 3), dtype=np.float32) if integrate_color else None
        self._strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1], dtype=np.int64)
        self._scratch = np.zeros(count, dtype=bool)
        self.frames_integrated = 0

    # ------------------------------------------------------------------ fusion
    def _voxels_of(self, points_world: np.ndarray) -> np.ndarray:
        """Distinct flat indices of the voxels containing ``points_world`` (P, 3) (outside: dropped)."""
        g = np.rint((points_world - self.origin.astype(np.float32)) / np.float32(self.voxel_size))
        g = g.astype(np.int64)
        g = g[((g >= 0) & (g < np.array(self.shape))).all(axis=1)]
        mark = self._scratch
        mark[g @ self._strides] = True
        idx = np.flatnonzero(mark)
        mark[idx] = False
        return idx

    def _candidates(self, points_cam: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
        """Flat indices of the voxels swept by the rays of ``points_cam`` (P, 3) over
        +-truncation around each point (steps of half a voxel along z)."""
        step = 0.5 * self.voxel_size
        n_steps = int(math.ceil(self.truncation / step))
        z = points_cam[:, 2]
        R = T_world_cam[:3, :3].astype(np.float32)
        # a point at depth z + o on the ray of p is p * (z + o) / z; in voxel units:
        # grid = (R p / voxel) * (1 + o / z) + (t - origin) / voxel
        base = (points_cam @ R.T) / np.float32(self.voxel_size)           # (P, 3)
        grid_t = ((T_world_cam[:3, 3] - self.origin) / self.voxel_size).astype(np.float32)
        inv_z = (1.0 / z).astype(np.float32)
        dims = np.array(self.shape, dtype=np.int64)
        mark = self._scratch
        for k in range(-n_steps, n_steps + 1):
            s = 1.0 + np.float32(k * step) * inv_z                          # (P,)
            g = np.rint(base * s[:, None] + grid_t).astype(np.int64)         # (P, 3)
            inside = ((g >= 0) & (g < dims)).all(axis=1)
            g = g[inside]
            mark[(g[:, 0] * self._strides[0] + g[:, 1] * self._strides[1]) + g[:, 2]] = True
        idx = np.flatnonzero(mark)
        mark[idx] = False
        return idx

    def integrate(self, depth_m: np.ndarray, intrinsics: Intrinsics, T_world_cam: np.ndarray,
                  rgb: np.ndarray | None = None, *, min_depth_m: float = 0.1,
                  max_depth_m: float = 8.0, pixel_stride: int = 0) -> None:
        """Fuse one depth image (H, W) float32 metres (0 = invalid) seen from ``T_world_cam``.

        ``pixel_stride`` subsamples the pixels that find the candidate voxels (0 = automatic,
        see :attr:`TSDFConfig.candidate_pixel_stride`); every candidate voxel is then
        updated from the full-resolution depth."""
        depth = np.asarray(depth_m, dtype=np.float32)
        T = np.asarray(T_world_cam, dtype=np.float64)
        h, w = depth.shape
        if pixel_stride <= 0:
            valid = depth[(depth > min_depth_m) & (depth < max_depth_m)]
            if len(valid) == 0:
                return
            footprint = float(np.percentile(valid, 90)) / min(intrinsics.fx, intrinsics.fy)
            pixel_stride = max(1, int(self.voxel_size / footprint))
        sub = depth[::pixel_stride, ::pixel_stride]
        vs, us = np.nonzero((sub > min_depth_m) & (sub < max_depth_m))
        if len(vs) == 0:
            return
        d = sub[vs, us]
        points_cam = camera_points(us * pixel_stride + 0.5, vs * pixel_stride + 0.5, d,
                                   intrinsics).astype(np.float32)
        # sweep from the distinct surface voxels (centres) rather than from every pixel:
        # neighbouring pixels mostly fall into the same voxel
        surface = self._voxels_of(points_cam @ T[:3, :3].T.astype(np.float32)
                                  + T[:3, 3].astype(np.float32))
        centres = np.stack(np.unravel_index(surface, self.shape), axis=1) * self.voxel_size + self.origin
        centres_cam = ((centres - T[:3, 3]) @ T[:3, :3]).astype(np.float32)
        centres_cam = centres_cam[centres_cam[:, 2] > 1e-3]
        idx = self._candidates(centres_cam, T)

        # voxel centres -> camera frame -> pixels
        ijk = np.stack(np.unravel_index(idx, self.shape), axis=1).astype(np.float32)
        world = ijk * self.voxel_size + self.origin.astype(np.float32)
        R_cw = T[:3, :3].T.astype(np.float32)
        t_cw = (-T[:3, :3].T @ T[:3, 3]).astype(np.float32)
        cam = world @ R_cw.T + t_cw
        z = cam[:, 2]
        px, py, front = project(cam, intrinsics)
        ok = front & (px >= 0) & (px < w) & (py >= 0) & (py < h)
        idx, px, py, z = idx[ok], px[ok], py[ok], z[ok]
        d = depth[py, px]
        sdf = d - z
        ok = (d > min_depth_m) & (d < max_depth_m) & (np.abs(sdf) <= self.truncation)
        idx, px, py, sdf = idx[ok], px[ok], py[ok], sdf[ok]
        value = sdf / self.truncation
        # behind the surface the projective distance is unreliable (occluding edges seen
        # at grazing angles): the weight drops linearly from 1 at -1 voxel to 0 at -truncation
        obs_w = np.clip((sdf + self.truncation) / max(self.truncation - self.voxel_size, 1e-6),
                        0.0, 1.0).astype(np.float32)
        keep = obs_w > 0
        idx, px, py, value, obs_w = idx[keep], px[keep], py[keep], value[keep], obs_w[keep]

        w_old = self.weight[idx]
        w_new = w_old + obs_w
        self.tsdf[idx] = (self.tsdf[idx] * w_old + value * obs_w) / w_new
        if self.color is not None and rgb is not None:
            c = np.asarray(rgb)[py, px].astype(np.float32)
            self.color[idx] = (self.color[idx] * w_old[:, None] + c * obs_w[:, None]) / w_new[:, None]
        self.weight[idx] = w_new
        self.frames_integrated += 1

    def integrate_frame(self, frame: Frame, *, min_depth_m: float = 0.1, max_depth_m: float = 8.0,
                        pixel_stride: int = 0) -> None:
        if frame.depth_m is None:
            raise ValueError(f"frame {frame.index} has no depth")
        self.integrate(frame.depth_m, frame.intrinsics, frame.T_world_cam,
                       frame.rgb if self.color is not None else None,
                       min_depth_m=min_depth_m, max_depth_m=max_depth_m, pixel_stride=pixel_stride)

    # ------------------------------------------------------------------ meshing
    def extract_mesh(self, min_weight: float = 1.0):
        """The zero level set as a trimesh.Trimesh in the world frame, with vertex colours
        (when fused) and vertex normals from the TSDF gradient (pointing into free space).
        An empty mesh when nothing was observed."""
        import trimesh
        from skimage.measure import marching_cubes

        observed = self.weight >= max(min_weight, 1e-6)
        if not observed.any():
            return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
        # crop to the observed voxels (+1) to keep marching cubes small
        obs3 = observed.reshape(self.shape)
        lo = np.array([np.flatnonzero(obs3.any(axis=tuple(a for a in range(3) if a != ax))).min()
                       for ax in range(3)])
        hi = np.array([np.flatnonzero(obs3.any(axis=tuple(a for a in range(3) if a != ax))).max()
                       for ax in range(3)]) + 1
        lo = np.maximum(lo - 1, 0)
        hi = np.minimum(hi + 1, np.array(self.shape))
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        tsdf = self.tsdf.reshape(self.shape)[sl]
        obs = obs3[sl]
        if min(obs.shape) < 2:
            return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
        volume = np.where(obs, tsdf, 1.0).astype(np.float32)
        try:
            verts, faces, normals, _ = marching_cubes(volume, level=0.0, gradient_direction="descent",
                                                      allow_degenerate=False)
        except (ValueError, RuntimeError):  # no crossing at level 0
            return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)

        # each vertex lies on one cube edge: its two end voxels are floor/ceil of verts
        a = np.floor(verts).astype(np.int64)
        b = np.minimum(np.ceil(verts).astype(np.int64), np.array(obs.shape) - 1)
        a_flat = np.ravel_multi_index(a.T, obs.shape)
        b_flat = np.ravel_multi_index(b.T, obs.shape)
        obs_f, vol_f = obs.ravel(), volume.ravel()
        good = obs_f[a_flat] & obs_f[b_flat]
        good &= np.minimum(np.abs(vol_f[a_flat]), np.abs(vol_f[b_flat])) < 0.999
        keep_face = good[faces].all(axis=1)
        faces = faces[keep_face]
        used = np.zeros(len(verts), dtype=bool)
        used[faces.ravel()] = True
        remap = np.cumsum(used) - 1
        faces = remap[faces]
        verts, normals = verts[used], normals[used]
        a_flat, b_flat = a_flat[used], b_flat[used]

        world = (verts + lo) * self.voxel_size + self.origin
        colors = None
        if self.color is not None:
            color = self.color.reshape(*self.shape, 3)[sl].reshape(-1, 3)
            rgb = 0.5 * (color[a_flat] + color[b_flat])
            colors = np.concatenate([np.clip(np.rint(rgb), 0, 255),
                                     np.full((len(rgb), 1), 255.0)], axis=1).astype(np.uint8)
        # skimage's normals point down the gradient (into the surface): flip them
        normals = -normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        mesh = trimesh.Trimesh(world, faces, vertex_normals=normals, vertex_colors=colors,
                               process=False)
        return mesh


# --------------------------------------------------------------------------- fusion


def fuse_frames(frames: Iterable[Frame], config: TSDFConfig = TSDFConfig(),
                bounds: np.ndarray | None = None) -> TSDFVolume:
    """Fuse every ``config.frame_stride``-th frame into a new volume over ``bounds``
    (default: the AABB of the depth) grown by ``config.bounds_margin_m``."""
    frames = list(frames)[::config.frame_stride]
    if bounds is None:
        bounds = bounds_from_depth(((f.depth_m, f.intrinsics, f.T_world_cam) for f in frames),
                                   min_depth_m=config.min_depth_m, max_depth_m=config.max_depth_m,
                                   step=8, percentile=0.1)
        if bounds is None:
            raise ValueError("no valid depth to bound the scene")
    bounds = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
    bounds = bounds + np.array([[-1.0], [1.0]]) * config.bounds_margin_m
    volume = TSDFVolume(bounds, config.voxel_size_m, config.truncation_m,
                        integrate_color=config.integrate_color, max_voxels=config.max_voxels)
    for frame in frames:
        volume.integrate_frame(frame, min_depth_m=config.min_depth_m, max_depth_m=config.max_depth_m,
                               pixel_stride=config.candidate_pixel_stride)
    return volume


def reconstruct_mesh(frames: Iterable[Frame], config: TSDFConfig = TSDFConfig(),
                     bounds: np.ndarray | None = None):
    """TSDF-fuse the frames and extract the coloured world-frame mesh (trimesh.Trimesh).

    ``mesh.metadata['tsdf']`` records the voxel size, volume shape and timings.
    """
    t0 = time.perf_counter()
    volume = fuse_frames(frames, config, bounds)
    t1 = time.perf_counter()
    mesh = volume.extract_mesh(config.min_weight)
    t2 = time.perf_counter()
    mesh.metadata["tsdf"] = {"voxel_size_m": volume.voxel_size, "shape": list(volume.shape),
                             "frames": volume.frames_integrated, "fuse_s": t1 - t0,
                             "mesh_s": t2 - t1}
    return mesh
