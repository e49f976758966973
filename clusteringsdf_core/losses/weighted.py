"""Masks as weights: reductions over a subset of rays in fixed shapes."""

from __future__ import annotations

from torch import Tensor

__all__ = ["masked_mean"]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (bool or 0/1, broadcastable) holds, 0 where it
    holds nowhere. Unlike ``values[mask].mean()`` the shapes do not depend on the data,
    so on a GPU there is no boolean indexing and no host round trip."""
    w = mask.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1e-12)
