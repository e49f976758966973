"""Named event counters of the online engine (and of the node's inputs)."""

from __future__ import annotations

import threading
from typing import Sequence

__all__ = ["Counters", "ENGINE_COUNTERS"]

#: The counters the engine bumps, with what each counts.
ENGINE_COUNTERS: dict[str, str] = {
    "frames_enqueued": "frames queued for the trainer",
    "frames_kept": "frames the key-frame buffer kept",
    "frames_not_keyframe": "frames the key-frame buffer declined (too close to the last one)",
    "frames_bootstrap_skipped": "frames without valid depth skipped while the bounds are estimated",
    "dropped_queue_full": "frames dropped because the trainer queue was full (oldest first)",
    "rejected_by_trainer": "frames the trainer refused (ValueError)",
    "map_grown": "times the mapped volume was enlarged for frames that showed new space",
    "map_growth_capped": "key frames that reached past the largest map side allowed (not covered)",
    "trainer_errors": "exceptions in the trainer or extractor threads",
    "extractions": "object extractions done",
    "autosaves": "periodic autosaves of the map written",
    "autosave_failures": "autosaves that could not be written (the stats say why)",
}


class Counters:
    """Named event counters, safe to bump from any thread."""

    def __init__(self, names: Sequence[str] = tuple(ENGINE_COUNTERS)):
        self._lock = threading.Lock()
        self._values = {name: 0 for name in names}

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + int(n)

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._values[name] = int(value)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
