"""Which machine class each channel renders, and how well it agrees with the 2D labels.

Instance mode learns channels without classes; a channel's class is named by the
machine classes of the rays it wins. :class:`ChannelClassCounts` accumulates, per
training view with labelled foreground rays, the (argmax channel, machine class)
pairs of those rays, with an exponential decay of 0.998 per such view so that a
channel that changes owner takes its new object's class. In semantic mode channel k
is class k.

It also measures each channel's *label agreement*, the confidence of its objects: of
the labelled object rays a channel wins (argmax of the softmax opacities), the share
whose 2D segment the channel owns in that view, i.e. wins most of the segment's rays
(semantic mode: whose class is the channel's). A channel that is one object across
views agrees with the segmenter everywhere (1); one that takes pieces of segments
another channel owns, or that the segmenter splits differently from view to view,
scores lower. The same decay applies; it needs no semantic labels.
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
        #: (c, 2) decayed [agreeing rays, rays won] per channel (label agreement)
        self.agreement = torch.zeros(num_channels, 2, dtype=torch.float64, device=device)

    def update(self, opacity_s: torch.Tensor, semantic: torch.Tensor, foreground: torch.Tensor) -> None:
        """Count the rays of one view: ``opacity_s`` (R, c) softmax opacities, ``semantic``
        (R,) machine classes, ``foreground`` (R,) labelled object rays."""
        counts = self.counts
        keep = foreground & (semantic > 0) & (semantic < counts.shape[1])
        channel = opacity_s.argmax(-1)
        cls = torch.where(keep, semantic, 0)      # masks as weights: no host round trip
        decay = torch.where(keep.any(), DECAY, 1.0).to(counts.dtype)     # views with foreground rays only
        self.counts = counts.mul_(decay).index_put_((channel, cls), keep.to(counts.dtype), accumulate=True)

    def update_agreement(self, opacity_s: torch.Tensor, group: torch.Tensor, num_groups: int,
                         keep: torch.Tensor) -> None:
        """Count the label agreement of one view's rays: ``opacity_s`` (R, c), ``group``
        (R,) each ray's segment in [0, num_groups) (semantic mode: its class), ``keep``
        (R,) the labelled object rays."""
        c = opacity_s.shape[1]
        channel = opacity_s.argmax(-1)
        w = keep.to(self.agreement.dtype)
        if self.semantic:
            owner_of_ray = group
        else:
            votes = torch.zeros(num_groups, c, dtype=w.dtype, device=w.device)
            votes.index_put_((group, channel), w, accumulate=True)
            owner_of_ray = votes.argmax(1)[group]           # the channel that wins most of the segment
        agree = (owner_of_ray == channel).to(w.dtype) * w
        decay = torch.where(keep.any(), DECAY, 1.0).to(w.dtype)
        self.agreement.mul_(decay).index_put_((channel,), torch.stack([agree, w], 1), accumulate=True)

    def agreement_shares(self) -> np.ndarray:
        """(c,) label agreement per channel in [0, 1]; 0 for a channel that never won a
        labelled object ray, and for channel 0 (background)."""
        a = self.agreement.cpu().numpy()
        share = np.where(a[:, 1] > 0, a[:, 0] / np.maximum(a[:, 1], 1e-12), 0.0)
        share[0] = 0.0
        return share

    def classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(class id per channel, confidence per channel): the most frequent machine class
        of a channel's rays (0 = unknown: no semantic labels, or channel 0) and the
        channel's label agreement (module docstring)."""
        c = self.counts.shape[0]
        conf = self.agreement_shares()
        if self.semantic:
            return np.arange(c), conf
        counts = self.counts.cpu().numpy().copy()
        counts[:, 0] = 0
        total = counts.sum(1)
        classes = counts.argmax(1)
        classes[total == 0] = 0
        classes[0] = 0
        return classes, conf

    def state(self) -> dict:
        return {"counts": self.counts.cpu(), "agreement": self.agreement.cpu()}

    def load(self, state) -> None:
        """Restore :meth:`state` (a checkpoint before label agreement: the counts alone)."""
        if torch.is_tensor(state):
            state = {"counts": state}
        self.counts = state["counts"].to(self.counts.device, torch.float64, copy=True)
        if "agreement" in state:
            self.agreement = state["agreement"].to(self.agreement.device, torch.float64, copy=True)
