"""Machine labels for a whole dataset from a 2D segmenter backend, written as a label
variant of the canonical layout (``labels/<variant>/{instance,semantic,confidence}``),
so that every reader and command then opens them with ``labels=<variant>``.

The dataset is any one the readers open. Unless ``out_dir`` is already a scene in
the canonical layout, its frames (colour, depth, poses, GT where there is any) are
written there first, without labels. Then each frame is segmented and its label PNGs
are written: each through a temporary file and a rename, so a run that stops leaves
only whole files. A second run with the same arguments segments only the frames
that have no instance file yet (resumable).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clusteringsdf_core.data.dataset import SceneDataset, write_png16, write_scene

__all__ = ["SegmentSummary", "segment_dataset"]


@dataclass(frozen=True)
class SegmentSummary:
    root: Path
    variant: str
    frames: int          # frames of the dataset (train + test)
    segmented: int       # segmented by this run (the others already had labels)
    segments_mean: float  # instances per segmented frame
    seconds_mean: float   # segmenter time per segmented frame (reading and writing not included)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path`` (same suffix), then rename it there."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def _atomic_png16(path: Path, image: np.ndarray) -> None:
    _atomic(path, lambda tmp: write_png16(tmp, image))


def _unlabelled(dataset: SceneDataset) -> SceneDataset:
    """The dataset with its frames' machine labels dropped (lazily)."""
    from clusteringsdf_core.data.frame import FrameSequence

    def strip(seq):
        return FrameSequence(len(seq), lambda i: dataclasses.replace(seq[i], instance=None, semantic=None,
                                                                     confidence=None), stamps=seq.stamps)

    return dataclasses.replace(dataset, train=strip(dataset.train), test=strip(dataset.test))


def segment_dataset(dataset: SceneDataset, out_dir: str | Path, backend, *, variant: str,
                    progress: Callable[[int, int], None] | None = None) -> SegmentSummary:
    """Segment every frame of ``dataset`` with ``backend`` (a
    :class:`~clusteringsdf_core.segment.backends.SegmenterBackend`) into
    ``out_dir/labels/<variant>`` (module docstring). ``progress(done, total)`` after
    each frame."""
    if not variant or "/" in variant or variant.startswith("."):
        raise ValueError(f"label variant must be a plain folder name, got {variant!r}")
    root = Path(out_dir)
    meta_path = root / "scene.json"
    if not meta_path.exists():
        write_scene(root, _unlabelled(dataset), label_variant=variant)
    meta = json.loads(meta_path.read_text())
    if meta.get("name") != dataset.name or len(meta.get("frames", [])) != len(dataset.train) + len(dataset.test):
        raise ValueError(f"{root} holds another scene ({meta.get('name')!r}, {len(meta.get('frames', []))} "
                         f"frames) than {dataset.name!r}: choose an empty --out")
    labels = root / "labels" / variant
    frames = (f for seq in (dataset.train, dataset.test) for f in seq)   # loaded one at a time
    total, segmented, segments, seconds = len(dataset.train) + len(dataset.test), 0, 0, 0.0
    for done, frame in enumerate(frames, 1):
        name = f"{frame.index:06d}.png"
        if not (labels / "instance" / name).exists():
            start = time.perf_counter()
            out = backend.segment(frame.rgb, frame.depth_m)
            seconds += time.perf_counter() - start
            (labels / "instance").mkdir(parents=True, exist_ok=True)
            if out.semantic is not None:
                (labels / "semantic").mkdir(parents=True, exist_ok=True)
                _atomic_png16(labels / "semantic" / name, out.semantic)
            if out.confidence is not None:
                (labels / "confidence").mkdir(parents=True, exist_ok=True)
                _atomic_png16(labels / "confidence" / name,
                              np.round(np.clip(out.confidence, 0.0, 1.0) * 65535.0))
            _atomic_png16(labels / "instance" / name, out.instance)   # last: marks the frame done
            segmented += 1
            segments += out.num_instances
        if progress is not None:
            progress(done, total)
    variants = set(meta.get("label_variants", [])) | {variant}
    meta["label_variants"] = sorted(variants)
    _atomic(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    return SegmentSummary(root=root, variant=variant, frames=total, segmented=segmented,
                          segments_mean=segments / segmented if segmented else 0.0,
                          seconds_mean=seconds / segmented if segmented else 0.0)
