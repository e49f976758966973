"""Rays from pinhole cameras, and their intersection with the scene box.

Conventions: ``T_world_cam`` is camera-to-world of the optical frame (x right,
y down, z forward); pixel (u, v) has its centre at (u + 0.5, v + 0.5).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pixel_rays", "ray_box", "image_pixels"]


def image_pixels(width: int, height: int, device=None) -> Tensor:
    """(H*W, 2) integer (u, v) of every pixel, row-major."""
    v, u = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                          indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def pixel_rays(K: Tensor, T_world_cam: Tensor, uv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rays through pixels.

    K: (3, 3) or (R, 3, 3); T_world_cam: (4, 4) or (R, 4, 4); uv: (R, 2) pixel indices.
    Returns origins (R, 3) and unit directions (R, 3) in the world frame, and
    ``z_per_t`` (R,): the optical-axis depth per unit of ray length (depth = t * z_per_t).
    """
    uv = uv.to(K.dtype) + 0.5
    K = K.expand(uv.shape[0], 3, 3) if K.dim() == 2 else K
    T = T_world_cam.expand(uv.shape[0], 4, 4) if T_world_cam.dim() == 2 else T_world_cam
    x = (uv[:, 0] - K[:, 0, 2]) / K[:, 0, 0]
    y = (uv[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
    dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    norm = dirs_cam.norm(dim=-1, keepdim=True)
    dirs = torch.einsum("rij,rj->ri", T[:, :3, :3], dirs_cam / norm)
    return T[:, :3, 3].clone(), dirs, (1.0 / norm.squeeze(-1))


def ray_box(origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor, near_min: float = 0.0,
            far_max: float | None = None) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays in the axis-aligned box [lo, hi] (slab method).

    Rays that miss get near = far. ``near`` is at least ``near_min``; ``far`` at most
    ``far_max`` (None: the box's exit).
    """
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=near_min)
    far = torch.maximum(t0, t1).amin(dim=-1)
    if far_max is not None:
        far = far.clamp(max=far_max)
    return near, torch.maximum(far, near)
