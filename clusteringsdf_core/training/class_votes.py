"""Where the segmenter saw which class: machine-class votes on a sparse voxel grid.

A channel's class (``Trainer.channel_classes``) is the most frequent machine class of
the rays it renders. When the extraction splits a channel into spatially separate
objects (``extract.split_channels``), those objects may be of different classes (two
objects never seen side by side can share a channel), so each part needs a class of
its own: :class:`ClassVotes` keeps, per voxel of ``voxel_m``, how often a labelled
training ray's measured surface point fell there with each machine class, and
:meth:`ClassVotes.class_of` names a part by the votes of the voxels its vertices touch.

The votes live in two tensors (sorted packed keys and counts) that grow with the
surface seen, not with the map's volume; new votes are buffered and merged every
``flush_every`` additions.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ClassVotes"]

_BITS = 18                      # per axis: 2^18 voxels (26 km at 0.1 m)
_OFFSET = 1 << (_BITS - 1)


class ClassVotes:
    """Machine-class votes per voxel (module docstring)."""

    def __init__(self, num_classes: int, voxel_m: float = 0.1, flush_every: int = 64):
        if num_classes < 1 or not voxel_m > 0:
            raise ValueError(f"ClassVotes needs num_classes >= 1 and voxel_m > 0, got {num_classes}, {voxel_m}")
        self.num_classes = int(num_classes)
        self.voxel_m = float(voxel_m)
        self.flush_every = int(flush_every)
        self.keys = torch.zeros(0, dtype=torch.int64)
        self.counts = torch.zeros(0, dtype=torch.float32)
        self._pending: list[torch.Tensor] = []

    def _voxels(self, points: torch.Tensor) -> torch.Tensor:
        ijk = torch.floor(points / self.voxel_m).to(torch.int64) + _OFFSET
        ijk = ijk.clamp(0, (1 << _BITS) - 1)
        return (ijk[:, 0] << (2 * _BITS)) | (ijk[:, 1] << _BITS) | ijk[:, 2]

    def add(self, points_world: torch.Tensor, classes: torch.Tensor) -> None:
        """One vote per point (N, 3) metres for its class (N,); classes outside
        1..num_classes-1 and non-finite points do not vote. Runs on the points' device
        without a host synchronisation (it is called every training step); the votes
        move to the CPU table at :meth:`flush`."""
        points = points_world.detach().float()
        usable = (classes > 0) & (classes < self.num_classes) & torch.isfinite(points).all(-1)
        points = torch.where(usable[:, None], points, torch.zeros_like(points))
        self._pending.append(self._voxels(points) * self.num_classes + torch.where(usable, classes, 0))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Merge the buffered votes into the table."""
        if not self._pending:
            return
        new = torch.cat(self._pending).cpu()
        self._pending = []
        new = new[new % self.num_classes != 0]            # the points that did not vote
        keys = torch.cat([self.keys, new])
        weights = torch.cat([self.counts, torch.ones(new.shape[0], dtype=torch.float32)])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros(self.keys.shape[0], dtype=torch.float32).index_add_(0, inverse, weights)

    def __len__(self) -> int:
        self.flush()
        return int(self.keys.shape[0])

    def class_of(self, points_world: np.ndarray) -> tuple[int, float]:
        """(class, share of the votes) over the voxels that ``points_world`` (N, 3)
        touch, each voxel counted once; (0, 0.0) without votes there."""
        self.flush()
        if len(points_world) == 0 or self.keys.numel() == 0:
            return 0, 0.0
        voxels = torch.unique(self._voxels(torch.as_tensor(np.asarray(points_world), dtype=torch.float32)))
        table_voxels = self.keys // self.num_classes
        hit = torch.isin(table_voxels, voxels)
        if not bool(hit.any()):
            return 0, 0.0
        per_class = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(
            0, self.keys[hit] % self.num_classes, self.counts[hit].double())
        best = int(per_class.argmax())
        return best, float(per_class[best] / per_class.sum())

    def state_dict(self) -> dict:
        self.flush()
        return {"num_classes": self.num_classes, "voxel_m": self.voxel_m,
                "keys": self.keys.clone(), "counts": self.counts.clone()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ClassVotes":
        votes = cls(int(state["num_classes"]), float(state["voxel_m"]))
        votes.keys, votes.counts = state["keys"].clone(), state["counts"].clone()
        return votes
