"""Camera poses of a stream, matched to image stamps."""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any, Callable

import numpy as np

__all__ = ["PoseHistory", "PendingSets", "MAX_POSE_INTERPOLATION_GAP_S"]

_NS = 1_000_000_000

#: Poses are interpolated between two poses at most this far apart (seconds).
MAX_POSE_INTERPOLATION_GAP_S = 0.25


class PoseHistory:
    """Recent camera poses by stamp (nanoseconds); :meth:`lookup` matches an image stamp.

    Between two poses at most ``max_gap_ns`` apart the pose is interpolated (linear
    translation, slerp rotation); otherwise the nearest pose within ``slop_ns`` is
    used; otherwise there is no pose for that stamp. Thread-safe.
    """

    def __init__(self, max_len: int = 200, max_gap_ns: int = int(MAX_POSE_INTERPOLATION_GAP_S * _NS)):
        self.max_len = int(max_len)
        self.max_gap_ns = int(max_gap_ns)
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, T: np.ndarray) -> None:
        with self._lock:
            i = bisect.bisect_right(self._stamps, int(stamp_ns))
            self._stamps.insert(i, int(stamp_ns))
            self._poses.insert(i, np.asarray(T, dtype=np.float64))
            if len(self._stamps) > self.max_len:
                del self._stamps[0], self._poses[0]

    @property
    def newest_ns(self) -> int | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        with self._lock:
            self._stamps, self._poses = [], []

    def drop_newer_than(self, stamp_ns: int) -> int:
        """Forget the poses stamped after ``stamp_ns``; returns how many."""
        with self._lock:
            i = bisect.bisect_right(self._stamps, int(stamp_ns))
            dropped = len(self._stamps) - i
            del self._stamps[i:], self._poses[i:]
            return dropped

    def lookup(self, stamp_ns: int, slop_ns: int) -> np.ndarray | None:
        from scipy.spatial.transform import Rotation, Slerp

        t = int(stamp_ns)
        with self._lock:
            if not self._stamps:
                return None
            i = bisect.bisect_left(self._stamps, t)
            after = i if i < len(self._stamps) else None
            before = i - 1 if i > 0 else None
            if after is not None and self._stamps[after] == t:
                return self._poses[after].copy()
            if before is not None and after is not None:
                t0, t1 = self._stamps[before], self._stamps[after]
                if t1 - t0 <= self.max_gap_ns:
                    w = (t - t0) / (t1 - t0)
                    T0, T1 = self._poses[before], self._poses[after]
                    rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]])))
                    T = np.eye(4)
                    T[:3, :3] = rot([w]).as_matrix()[0]
                    T[:3, 3] = (1 - w) * T0[:3, 3] + w * T1[:3, 3]
                    return T
            candidates = [j for j in (before, after) if j is not None]
            j = min(candidates, key=lambda k: abs(self._stamps[k] - t))
            if abs(self._stamps[j] - t) <= slop_ns:
                return self._poses[j].copy()
            return None


class PendingSets:
    """Input sets waiting for the camera pose at their stamp (a pose topic that lags the
    images, or a TF transform that has not come yet). Thread-safe.

    :meth:`resolve` hands out the sets whose pose can be told now, with that pose: by
    default those whose stamp the newest pose of ``poses`` has reached, with the pose
    :meth:`PoseHistory.lookup` finds for them (None: no pose within ``slop_ns``); with
    ``pose_of(stamp_ns, item)`` instead, those it returns a pose for (it raises
    LookupError while the pose is not known yet). With ``expire``, sets that waited
    longer than ``wait_s`` go too, and beyond ``max_waiting`` sets the oldest are forced
    out; those that go without a pose come with None.
    """

    def __init__(self, poses: PoseHistory | None = None, *, slop_ns: int = 0, max_waiting: int,
                 wait_s: float = 1.0, pose_of: Callable[[int, Any], np.ndarray] | None = None):
        if (poses is None) == (pose_of is None):
            raise ValueError("PendingSets takes either a PoseHistory or pose_of")
        self.poses = poses
        self.pose_of = pose_of
        self.slop_ns = int(slop_ns)
        self.max_waiting = int(max_waiting)
        self.wait_s = float(wait_s)
        self._items: list[tuple[float, int, object]] = []   # (arrival, stamp_ns, item)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, stamp_ns: int, item, arrived_s: float | None = None) -> None:
        with self._lock:
            self._items.append((time.monotonic() if arrived_s is None else arrived_s, int(stamp_ns), item))

    def clear(self) -> int:
        """Forget every waiting set; returns how many."""
        with self._lock:
            n, self._items = len(self._items), []
            return n

    def _known(self, stamp_ns: int, item, newest: int | None) -> tuple[bool, np.ndarray | None]:
        if self.pose_of is None:
            return newest is not None and newest >= stamp_ns, None
        try:
            return True, self.pose_of(stamp_ns, item)
        except LookupError:
            return False, None

    def resolve(self, *, expire: bool = False, now_s: float | None = None
                ) -> list[tuple[int, object, np.ndarray | None]]:
        """(stamp_ns, item, pose or None) of the sets that stop waiting, oldest first."""
        now = time.monotonic() if now_s is None else now_s
        newest = self.poses.newest_ns if self.poses is not None else None
        ready, keep = [], []
        with self._lock:
            excess = len(self._items) - self.max_waiting
            for i, (arrived, stamp_ns, item) in enumerate(self._items):
                waited_out = (expire and now - arrived > self.wait_s) or i < excess
                known, pose = self._known(stamp_ns, item, newest)
                if known or waited_out:
                    ready.append((stamp_ns, item, pose))
                else:
                    keep.append((arrived, stamp_ns, item))
            self._items = keep
        if self.pose_of is not None:
            return ready
        return [(stamp, item, self.poses.lookup(stamp, self.slop_ns)) for stamp, item, _ in ready]
