"""Reconstruction and SDF-regularity losses (ObjectSDF++ / MonoSDF terms)."""

from __future__ import annotations

import torch
from torch import Tensor

from clusteringsdf_core.losses.weighted import masked_mean

__all__ = ["rgb_loss", "depth_loss", "eikonal_loss", "depth_sdf_loss"]


def rgb_loss(rgb_pred: Tensor, rgb_true: Tensor) -> Tensor:
    """L_rgb = mean |C(r) - C_gt(r)| (L1 over rays and channels)."""
    return (rgb_pred - rgb_true).abs().mean()


def depth_loss(depth_pred: Tensor, depth_true: Tensor) -> Tensor:
    """L_depth = mean over rays with valid depth (> 0) of |D(r) - D_gt(r)| (same units)."""
    return masked_mean((depth_pred - depth_true).abs(), depth_true > 0)


def eikonal_loss(grad: Tensor) -> Tensor:
    """L_eik = mean (||grad d_k(x)||_2 - 1)^2 over points and channels; ``grad`` (M, c, 3)."""
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def depth_sdf_loss(scene_sdf: Tensor, t: Tensor, depth_t: Tensor, truncation: float) -> Tensor:
    """SDF supervision from measured depth (Neural RGB-D / iSDF style), per ray sample.

    With D the measured distance along the ray and t a sample's distance (same units):
    inside the band |D - t| <= truncation the scene SDF should equal the projective
    distance D - t (L1); in front of the band (free space) it must not be negative
    (ReLU(-sdf)). Behind the band nothing is known. ``scene_sdf`` and ``t`` are (R, S),
    ``depth_t`` (R,) with 0 = no measurement.
    """
    gap = depth_t[:, None] - t
    valid = (depth_t > 0)[:, None]
    band = valid & (gap.abs() <= truncation)
    free = valid & (gap > truncation)
    return masked_mean((scene_sdf - gap).abs(), band) + masked_mean(torch.relu(-scene_sdf), free)
