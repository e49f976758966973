"""Maps that survive a crash: periodic autosaves and finding a saved map to start from.

Autosaves of one engine go into a run folder of their own under the autosave root
(``<root>/run_<YYYYmmdd_HHMMSS>/``), so a node started afresh never overwrites the map
of an earlier run. Each autosave is a trainer checkpoint named by its wall time
(``autosave_<time_ns>.pt``), written atomically (temporary file, then rename), with the
key frames in the run folder's ``keyframes/`` (written once each,
:mod:`~clusteringsdf_core.training.checkpoint`) and the object tracker inside the
checkpoint, so a map loaded from it continues the object ids. The newest ``keep``
autosaves of the run are kept; key frames none of them names are deleted.

:func:`find_checkpoint` resolves what a user points at (a checkpoint file, a saved-map
folder, a run folder or the autosave root) to the newest checkpoint there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from clusteringsdf_core.training.checkpoint import (KEYFRAME_DIR, copy_state, keyframe_uids, prune_keyframes,
                                                    read_checkpoint, write_checkpoint)

__all__ = ["Autosaver", "find_checkpoint", "AUTOSAVE_PREFIX", "SAVED_CHECKPOINT"]

AUTOSAVE_PREFIX = "autosave_"
#: The checkpoint of a map saved by ``MappingEngine.save`` (``~/save_map``).
SAVED_CHECKPOINT = "checkpoint.pt"


def _autosaves(folder: Path) -> list[Path]:
    """Autosave checkpoints of a run folder, oldest first."""
    return sorted(folder.glob(f"{AUTOSAVE_PREFIX}*.pt"))


class Autosaver:
    """Writes the autosaves of one run (module docstring): :meth:`write` on the calling
    thread, or :meth:`start` on a thread of its own, one at a time."""

    def __init__(self, root: str | Path, *, period_s: float = 60.0, keep: int = 2):
        if keep < 1 or period_s <= 0:
            raise ValueError(f"Autosaver: keep must be at least 1 and period_s positive, got {keep}, {period_s}")
        self.period_s = float(period_s)
        self._last = (time.monotonic(), 0)       # when the last autosave began, at which iteration
        base = Path(root).expanduser() / time.strftime("run_%Y%m%d_%H%M%S")
        self.folder, n = base, 1
        while self.folder.exists():          # two runs started within one second
            self.folder, n = base.with_name(f"{base.name}.{n}"), n + 1
        self.keep = int(keep)
        self._uids: dict[str, list[str]] = {}     # key frames of the checkpoints written
        self._thread: threading.Thread | None = None

    def due(self, iteration: int) -> bool:
        """A period has passed since the last autosave (or :meth:`mark`), the model
        trained since, and no write is in flight."""
        since, last = self._last
        return time.monotonic() - since >= self.period_s and iteration != last and not self.busy

    def mark(self, iteration: int) -> None:
        """Count the period from now, as if ``iteration`` had just been saved (a map loaded)."""
        self._last = (time.monotonic(), int(iteration))

    @property
    def busy(self) -> bool:
        """An autosave started with :meth:`start` is still being written."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, state: dict, views: Sequence,
              done: Callable[[int, Path | None, Exception | None], None]) -> None:
        """Copy ``state`` off the live tensors (on the caller's thread: the trainer's),
        then write it on a thread of its own; ``done(iteration, path, error)`` there
        after. The caller checks :meth:`due` (or :attr:`busy`) first."""
        if self.busy:
            raise RuntimeError("an autosave is still being written")
        state, views = copy_state(state), list(views)
        self.mark(int(state["iteration"]))

        def run():
            try:
                path = self.write(state, views)
            except Exception as exc:
                done(int(state["iteration"]), None, exc)
            else:
                done(int(state["iteration"]), path, None)

        self._thread = threading.Thread(target=run, name="mapping_autosave", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for an autosave being written."""
        if self._thread is not None:
            self._thread.join(timeout)

    def write(self, state: dict, views: Sequence) -> Path:
        """One autosave of ``state`` (a trainer state dict, copied off the live tensors)
        and its key frames ``views``; the older autosaves beyond ``keep`` are removed."""
        path = self.folder / f"{AUTOSAVE_PREFIX}{time.time_ns():020d}.pt"
        write_checkpoint(path, state, views)
        self._uids[path.name] = keyframe_uids(state)
        saves = _autosaves(self.folder)
        for old in saves[:-self.keep]:
            old.unlink(missing_ok=True)
            self._uids.pop(old.name, None)
        kept = set()
        for p in saves[-self.keep:]:
            if p.name not in self._uids:   # not written by this writer: read what it names
                self._uids[p.name] = keyframe_uids(read_checkpoint(p))
            kept.update(self._uids[p.name])
        prune_keyframes(self.folder / KEYFRAME_DIR, kept)
        return path


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``path`` stands for: the file itself; a saved map's
    ``checkpoint.pt``; else the newest autosave in the folder or in its run folders.
    FileNotFoundError says what was looked for."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no map at {path}: neither a checkpoint file nor a folder")
    if (path / SAVED_CHECKPOINT).is_file():
        return path / SAVED_CHECKPOINT
    candidates = _autosaves(path) + [p for run in sorted(path.iterdir()) if run.is_dir() for p in _autosaves(run)]
    if not candidates:
        raise FileNotFoundError(f"no map in {path}: no {SAVED_CHECKPOINT} and no {AUTOSAVE_PREFIX}*.pt there "
                                "or in its run folders")
    return max(candidates, key=lambda p: p.name)
