"""Key frames: which views training draws, offline and from a stream.

Offline (supplementary 1.2): frames are ranked by their number of distinct
labels; the top share are key frames; frames with no label are "empty" and are
replaced by a random key frame when drawn (and, as in the public code, any drawn
frame may be swapped for a key frame with a small probability).

Online (:class:`KeyframeBuffer`): a bounded buffer. A new frame is kept only if
the camera moved or turned enough since the last kept frame; when the buffer is
full one frame leaves according to the eviction policy (``fewest_labels`` keeps
the newcomer only if it shows at least as many labels as the frame it would
replace). The label-count ranking of the kept frames
gives the key frames, as offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import numpy as np

from clusteringsdf_core.config import KeyframeConfig

__all__ = ["select_keyframes", "KeyframeSampler", "KeyframeBuffer", "pose_distance"]

T = TypeVar("T")


def select_keyframes(label_counts: Sequence[int], top_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(key frame indices, empty frame indices) from per-frame distinct-label counts.

    The key frames are the ``ceil(top_fraction * n)`` frames with the most labels
    (ties broken by index, so the choice is deterministic); empty frames have 0 labels.
    """
    counts = np.asarray(label_counts)
    n = len(counts)
    if n == 0:
        return np.zeros(0, int), np.zeros(0, int)
    k = max(1, math.ceil(top_fraction * n))
    order = np.lexsort((np.arange(n), -counts))
    keys = np.sort(order[:k])
    keys = keys[counts[keys] > 0] if (counts > 0).any() else keys
    return keys, np.flatnonzero(counts == 0)


class KeyframeSampler:
    """Draws the view of each iteration under the key-frame rules."""

    def __init__(self, label_counts: Sequence[int], config: KeyframeConfig):
        self.config = config
        self.update(label_counts)

    def update(self, label_counts: Sequence[int]) -> None:
        self.counts = np.asarray(label_counts)
        self.keys, self.empty = select_keyframes(self.counts, self.config.top_fraction)
        self._empty = set(self.empty.tolist())

    def draw(self, rng: np.random.Generator) -> int:
        n = len(self.counts)
        if n == 0:
            raise ValueError("no frames to draw from")
        i = int(rng.integers(n))
        swap = self.config.swap_probability > 0 and rng.random() < self.config.swap_probability
        if (self.config.replace_empty and i in self._empty) or swap:
            if len(self.keys):
                i = int(self.keys[rng.integers(len(self.keys))])
        return i


def pose_distance(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation in metres, rotation in degrees) between two camera poses."""
    dt = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]))
    R = T_a[:3, :3].T @ T_b[:3, :3]
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1) / 2))))
    return dt, angle


@dataclass
class _Entry(Generic[T]):
    item: T
    pose: np.ndarray
    num_labels: int
    added: int


class KeyframeBuffer(Generic[T]):
    """A bounded buffer of frames for online training.

    ``offer(item, pose, num_labels)`` returns ``(accepted, evicted_item_or_None)``.
    """

    def __init__(self, config: KeyframeConfig):
        self.config = config
        self.entries: list[_Entry[T]] = []
        self._counter = 0
        self.rejected_redundant = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def items(self) -> list[T]:
        return [e.item for e in self.entries]

    def label_counts(self) -> list[int]:
        return [e.num_labels for e in self.entries]

    def _is_redundant(self, pose: np.ndarray) -> bool:
        if not self.entries:
            return False
        last = max(self.entries, key=lambda e: e.added)
        dt, dr = pose_distance(last.pose, pose)
        return dt < self.config.min_translation_m and dr < self.config.min_rotation_deg

    def offer(self, item: T, pose: np.ndarray, num_labels: int) -> tuple[bool, T | None]:
        if self._is_redundant(pose):
            self.rejected_redundant += 1
            return False, None
        evicted = None
        if len(self.entries) >= self.config.buffer_size:
            victim = self._victim(pose, num_labels)
            if victim is None:
                self.rejected_redundant += 1
                return False, None
            evicted = self.entries.pop(victim).item
            self.evicted += 1
        self._counter += 1
        self.entries.append(_Entry(item, np.asarray(pose, float), int(num_labels), self._counter))
        return True, evicted

    def state(self, key=lambda item: item) -> dict:
        """The buffer without its items, which ``key(item)`` names (checkpoints)."""
        return {"entries": [{"item": key(e.item), "pose": e.pose.tolist(), "num_labels": e.num_labels,
                             "added": e.added} for e in self.entries],
                "counter": self._counter, "rejected_redundant": self.rejected_redundant,
                "evicted": self.evicted}

    def load(self, state: dict, items: Sequence[T]) -> None:
        """Restore :meth:`state` with ``items`` in the order of its entries."""
        entries = state["entries"]
        if len(items) != len(entries):
            raise ValueError(f"key-frame buffer state has {len(entries)} entries, got {len(items)} items")
        self.entries = [_Entry(item, np.asarray(e["pose"], float), int(e["num_labels"]), int(e["added"]))
                        for item, e in zip(items, entries)]
        self._counter = int(state["counter"])
        self.rejected_redundant = int(state["rejected_redundant"])
        self.evicted = int(state["evicted"])

    def _victim(self, pose: np.ndarray, num_labels: int) -> int | None:
        policy = self.config.eviction
        if policy == "oldest":
            return min(range(len(self.entries)), key=lambda i: self.entries[i].added)
        if policy == "fewest_labels":
            i = min(range(len(self.entries)), key=lambda i: (self.entries[i].num_labels, self.entries[i].added))
            return i if self.entries[i].num_labels <= num_labels else None
        if policy == "most_redundant":
            positions = np.array([e.pose[:3, 3] for e in self.entries])
            d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
            np.fill_diagonal(d, np.inf)
            return int(np.argmin(d.min(axis=1)))
        raise ValueError(f"unknown eviction policy {policy!r}")
