"""Which machine class each channel renders: (channel, class) co-occurrence counts.

Instance mode learns channels without classes; a channel's class is named by the
machine classes of the rays it wins. :class:`ChannelClassCounts` accumulates, per
training view with labelled foreground rays, the (argmax channel, machine class)
pairs of those rays, with an exponential decay of 0.998 per such view so that a
channel that changes owner takes its new object's class. In semantic mode channel k
is class k.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ChannelClassCounts"]

#: Decay of the counts per view with labelled foreground rays (about 500 views' memory).
DECAY = 0.998


class ChannelClassCounts:
    """(c, k) float64 counts on the trainer's device; ``semantic``: channel k is class k."""

    def __init__(self, num_channels: int, num_classes: int, device: torch.device, *, semantic: bool = False):
        self.semantic = semantic
        self.counts = torch.zeros(num_channels, num_classes, dtype=torch.float64, device=device)

    def update(self, opacity_s: torch.Tensor, semantic: torch.Tensor, foreground: torch.Tensor) -> None:
        """Count the rays of one view: ``opacity_s`` (R, c) softmax opacities, ``semantic``
        (R,) machine classes, ``foreground`` (R,) labelled object rays."""
        counts = self.counts
        keep = foreground & (semantic > 0) & (semantic < counts.shape[1])
        channel = opacity_s.argmax(-1)
        cls = torch.where(keep, semantic, 0)      # masks as weights: no host round trip
        decay = torch.where(keep.any(), DECAY, 1.0).to(counts.dtype)     # views with foreground rays only
        self.counts = counts.mul_(decay).index_put_((channel, cls), keep.to(counts.dtype), accumulate=True)

    def classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(class id per channel, confidence per channel): the most frequent machine class
        of a channel's rays and its share of them; channel 0 (background) and channels
        without counts are class 0 with confidence 0."""
        c = self.counts.shape[0]
        if self.semantic:
            return np.arange(c), np.ones(c)
        counts = self.counts.cpu().numpy().copy()
        counts[:, 0] = 0
        total = counts.sum(1)
        classes = counts.argmax(1)
        conf = np.where(total > 0, counts.max(1) / np.maximum(total, 1e-9), 0.0)
        classes[total == 0] = 0
        classes[0] = 0
        return classes, conf

    def state(self) -> torch.Tensor:
        return self.counts.cpu()

    def load(self, counts: torch.Tensor) -> None:
        self.counts = counts.to(self.counts.device, torch.float64, copy=True)
