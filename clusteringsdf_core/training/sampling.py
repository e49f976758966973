"""Which pixels become rays: label-comprehensive sampling within one view.

The clustering losses compare the cluster centres of the labels *of one view*, so
every label present in the view must get rays (paper: "the rays of a view must
contain at least one ray of every label"). :class:`LabelIndex` sorts a view's
pixels by label once; :func:`label_comprehensive_pixels` then draws, per batch,
``k`` rays for every label plus uniformly random ones, in O(rays) time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LabelIndex", "label_comprehensive_pixels", "uniform_pixels"]


class LabelIndex:
    """Pixels of one view grouped by label, on the labels' device: ``order`` sorted by
    label, ``starts`` and ``counts`` per unique label (``labels``), and ``group`` (P,)
    each pixel's index into ``labels`` (the rays' groups of the clustering losses,
    computed once per view instead of a ``torch.unique`` per step)."""

    def __init__(self, labels_flat: Tensor):
        order = torch.argsort(labels_flat, stable=True)
        uniq, inverse, counts = torch.unique_consecutive(labels_flat[order], return_inverse=True,
                                                         return_counts=True)
        self.order = order
        self.labels = uniq
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts
        self.group = torch.empty_like(order).scatter_(0, order, inverse)

    @property
    def num_labels(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.order.device


def uniform_pixels(num_pixels: int, n: int, generator: torch.Generator | None = None,
                   device=None) -> Tensor:
    """``n`` flat pixel indices drawn uniformly from ``num_pixels``; ``device`` defaults
    to the generator's."""
    device = device if device is not None else (generator.device if generator is not None else None)
    return torch.randint(0, num_pixels, (n,), generator=generator, device=device)


def label_comprehensive_pixels(index: LabelIndex, n: int, *, per_label_share: float = 0.0,
                               generator: torch.Generator | None = None) -> Tensor:
    """Flat pixel indices on the index's device: ``k = max(1, ceil(share * n))`` per label
    (with replacement inside a label), the rest of the ``n`` uniformly at random. Every
    label of the view gets at least one ray even when ``n`` is smaller than the number of
    labels (then the batch has one ray per label). Fixed shapes, no host round trip."""
    k = max(1, math.ceil(per_label_share * n))
    num_labels, dev = index.num_labels, index.device
    owner = torch.arange(num_labels, device=dev).repeat_interleave(k)
    u = torch.rand(owner.shape[0], generator=generator, device=dev)
    picks = index.starts[owner] + (u * index.counts[owner]).long()
    picks = torch.minimum(picks, index.starts[owner] + index.counts[owner] - 1)
    labelled = index.order[picks]
    rest = n - labelled.shape[0]
    if rest <= 0:
        return labelled
    return torch.cat([labelled, uniform_pixels(int(index.order.shape[0]), rest, generator, dev)])
