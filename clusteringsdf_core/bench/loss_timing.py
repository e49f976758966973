"""The paper's complexity argument, measured: clustering loss vs pairwise contrastive loss.

The clustering loss (L_diff + L_onehot + L_reg) needs only per-label centres:
O(N^2 + R) per view with N labels and R rays. A Contrastive-Lift-style loss compares
every pair of rays: O(R^2). :func:`time_losses` times forward + backward of both on
the same random opacities and labels at several ray counts.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from clusteringsdf_core.losses import clustering as lc

__all__ = ["time_losses"]


def _clustering(opacity: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    s = lc.softmax_opacity(opacity)
    fg = labels > 0
    return 20 * lc.diff_loss(s, labels) + 0.5 * lc.onehot_loss(opacity, s, fg) + 1e4 * lc.reg_loss(s, labels)


def _time(fn, opacity, labels, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        x = opacity.clone().requires_grad_(True)
        start = time.perf_counter()
        fn(x, labels).backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def time_losses(ray_counts: Sequence[int] = (1024, 4096, 16384), *, channels: int = 16, labels: int = 12,
                repeats: int = 3, device: str = "cpu", seed: int = 0) -> list[dict]:
    """Best-of-``repeats`` seconds of forward + backward for both losses per ray count."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for r in ray_counts:
        opacity = torch.rand(r, channels, generator=g).to(device)
        lab = torch.randint(0, labels, (r,), generator=g).to(device)
        clustering_s = _time(_clustering, opacity, lab, repeats)
        contrastive_s = _time(lc.pairwise_contrastive_loss, opacity, lab, repeats)
        rows.append({"rays": r, "clustering_s": clustering_s, "contrastive_s": contrastive_s,
                     "ratio": contrastive_s / max(clustering_s, 1e-12)})
    return rows
