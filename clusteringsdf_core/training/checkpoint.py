"""Trainer checkpoints on disk.

A checkpoint is one ``torch.save`` file of :meth:`Trainer.state_dict`, written to a
temporary name and renamed, so a reader never sees half a file. An offline trainer's
views are the dataset's frames, re-read on load. An online trainer's key frames exist
nowhere else: they go into a ``keyframes/`` folder beside the checkpoint, one file per
view named by its ``uid`` (:func:`~.views.view_state`). A view never changes once made,
so a file already there is not written again: periodic saves into one folder write
only the views that arrived since the last one, and several checkpoints of one folder
share their views. :func:`prune_keyframes` removes the files no kept checkpoint names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from clusteringsdf_core.training.views import TrainingView, view_from_state, view_state

__all__ = ["CHECKPOINT_FORMAT", "KEYFRAME_DIR", "write_checkpoint", "read_checkpoint", "read_keyframes",
           "keyframe_uids", "prune_keyframes", "copy_state"]

CHECKPOINT_FORMAT = "clusteringsdf-checkpoint/1"
#: The folder beside a checkpoint that holds an online trainer's key frames.
KEYFRAME_DIR = "keyframes"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def copy_state(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU: a state dict another thread may write
    while training changes the live tensors."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_state(v) for v in obj)
    return obj


def write_checkpoint(path: str | Path, state: dict, views: Sequence[TrainingView] = ()) -> Path:
    """Write ``state`` (a trainer's state dict) to ``path`` atomically, and ``views`` (an
    online trainer's key frames) into ``keyframes/`` beside it, each once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if views:
        folder = path.parent / KEYFRAME_DIR
        folder.mkdir(exist_ok=True)
        for view in views:
            target = folder / f"{view.uid}.pt"
            if not target.exists():
                _atomic_save(view_state(view), target)
    _atomic_save(state, path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The state dict of a checkpoint file; ValueError for a file that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a clusteringsdf checkpoint")
    return state


def keyframe_uids(state: dict) -> list[str]:
    """The key frames a checkpoint's state names (none for an offline trainer)."""
    buffer = state.get("keyframes")
    return [] if not buffer else [str(e["item"]) for e in buffer["entries"]]


def read_keyframes(folder: str | Path, uids: Sequence[str], mode: str,
                   device: torch.device) -> list[TrainingView]:
    """The views ``uids`` from a key-frame folder, on ``device``; FileNotFoundError names
    the first one missing."""
    folder = Path(folder)
    views = []
    for uid in uids:
        file = folder / f"{uid}.pt"
        if not file.is_file():
            raise FileNotFoundError(f"key frame {uid} of the checkpoint is missing from {folder}")
        views.append(view_from_state(torch.load(file, map_location="cpu", weights_only=False), mode, device))
    return views


def prune_keyframes(folder: str | Path, keep: Iterable[str]) -> int:
    """Delete the key-frame files of ``folder`` whose uid is not in ``keep``; how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    keep = set(keep)
    removed = 0
    for file in folder.glob("*.pt"):
        if file.stem not in keep:
            file.unlink(missing_ok=True)
            removed += 1
    return removed
