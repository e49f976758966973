"""Where along each ray the field is evaluated.

Distances ``t`` are along unit-direction rays in normalised scene units; every
sampler returns sorted ``t`` of shape (R, S).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["uniform_samples", "importance_samples", "depth_band_samples", "merge_samples"]


def uniform_samples(near: Tensor, far: Tensor, n: int, *, perturb: bool,
                    generator: torch.Generator | None = None) -> Tensor:
    """Stratified samples: one per equal bin of [near, far] (bin centres when not perturbed)."""
    bins = torch.linspace(0.0, 1.0, n + 1, device=near.device, dtype=near.dtype)
    lo, hi = bins[:-1], bins[1:]
    if perturb:
        u = torch.rand(near.shape[0], n, device=near.device, dtype=near.dtype, generator=generator)
    else:
        u = torch.full((near.shape[0], n), 0.5, device=near.device, dtype=near.dtype)
    frac = lo + (hi - lo) * u
    return near[:, None] + (far - near)[:, None] * frac


def importance_samples(t: Tensor, weights: Tensor, n: int, *, perturb: bool,
                       generator: torch.Generator | None = None) -> Tensor:
    """Inverse-CDF samples from the piecewise-constant distribution ``weights`` (R, S) on
    the intervals between consecutive ``t`` (R, S); (R, n) sorted, no gradient."""
    with torch.no_grad():
        w = weights[:, :-1] + 1e-5
        pdf = w / w.sum(-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], dim=-1)     # (R, S)
        if perturb:
            u = torch.rand(t.shape[0], n, device=t.device, dtype=t.dtype, generator=generator)
        else:
            u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, device=t.device, dtype=t.dtype).expand(t.shape[0], n)
        u = u.contiguous()
        idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)
        c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
        t0, t1 = t.gather(1, idx - 1), t.gather(1, idx)
        frac = (u - c0) / (c1 - c0).clamp(min=1e-8)
        return torch.sort(t0 + frac * (t1 - t0), dim=-1).values


def depth_band_samples(depth_t: Tensor, near: Tensor, far: Tensor, n_band: int, band: float, *,
                       perturb: bool, generator: torch.Generator | None = None) -> Tensor:
    """Stratified samples in [depth - band, depth + band] clipped to [near, far]; (R, n_band)."""
    lo = torch.maximum(depth_t - band, near)
    hi = torch.minimum(depth_t + band, far)
    return uniform_samples(lo, torch.maximum(hi, lo + 1e-4), n_band, perturb=perturb, generator=generator)


def merge_samples(*ts: Tensor) -> Tensor:
    return torch.sort(torch.cat(ts, dim=-1), dim=-1).values
