"""Benchmark protocols and the simulated machine labels they run on.

:data:`PROTOCOLS`: ``baselines`` and ``table_2`` run every method on the "realistic"
simulated segmenter (``table_2`` is named for the paper's ablation table: the ablated
trainers are registered as methods of their own); ``table_a`` follows the
supplementary's Table A: GT instance labels with ids randomised per view and 0 / 10 /
30 / 50 / 70% of each view's instances masked out. :func:`with_labels` makes a copy of
a scene whose frames carry labels simulated from their ground truth
(:mod:`clusteringsdf_core.data.segmenter_sim`), lazily and deterministically per frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Iterator

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.data.segmenter_sim import (SegmenterSimConfig, preset, simulate_frame,
                                                   table_a_presets)

__all__ = ["Protocol", "PROTOCOLS", "SimulatedLabelFrames", "with_labels", "own_labels"]


@dataclass(frozen=True)
class Protocol:
    """A benchmark protocol: which simulated label variants every method runs on."""

    name: str
    description: str
    variants: tuple[str, ...]          # segmenter_sim preset names
    #: the label variants are the scenes' own machine labels (named per run), not simulated
    own_labels: bool = False


PROTOCOLS: dict[str, Protocol] = {
    "baselines": Protocol("baselines", "every method on realistic simulated machine labels "
                          "(Mask2Former-like: view-local ids, missed / split / merged "
                          "objects, boundary noise, class flips)", ("realistic",)),
    "table_a": Protocol("table_a", "supplementary Table A (robustness): GT instance labels "
                        "with ids randomised per view and a share of each view's instances "
                        "masked out (unlabelled)", tuple(table_a_presets())),
    "table_2": Protocol("table_2", "paper Table 2 (ablations): every method, the ablated "
                        "trainers being methods of their own, on realistic simulated labels",
                        ("realistic",)),
    "machine": Protocol("machine", "every method on the scenes' own machine labels: a label variant "
                        "written by a 2D segmenter (`clusteringsdf segment SCENE --out SCENE`, e.g. "
                        "detector), named with --labels, scored against the GT like the others",
                        (), own_labels=True),
}


# --------------------------------------------------------------------------- labels


class SimulatedLabelFrames(Sequence):
    """Frames of ``base`` with ``instance`` / ``semantic`` / ``confidence`` simulated
    from their ground truth when read (each frame seeded by (seed, frame.index), so a
    frame's labels do not depend on access order). ``base`` stays reachable, so the
    geometry can be recognised as the same (:func:`methods.geometry_source`)."""

    def __init__(self, base: Sequence[Frame], config: SegmenterSimConfig, seed: int,
                 classes: ClassTable):
        self.base = base
        self.config = config
        self.seed = int(seed)
        self.classes = classes

    @property
    def stamps(self):
        return getattr(self.base, "stamps", None)

    def __len__(self) -> int:
        return len(self.base)

    def _label(self, frame: Frame) -> Frame:
        instance, semantic, confidence = simulate_frame(frame, self.config, seed=self.seed,
                                                        classes=self.classes)
        return frame.with_labels(instance=instance, semantic=semantic, confidence=confidence)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._label(self.base[i])

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.base:
            yield self._label(frame)


def _label_config(preset_name_or_config: str | SegmenterSimConfig) -> tuple[str, SegmenterSimConfig]:
    if isinstance(preset_name_or_config, SegmenterSimConfig):
        return "custom", preset_name_or_config
    return str(preset_name_or_config), preset(str(preset_name_or_config))


def with_labels(dataset: SceneDataset, preset_name_or_config: str | SegmenterSimConfig,
                seed: int = 0) -> SceneDataset:
    """A copy of ``dataset`` whose train and test frames carry machine labels simulated
    from their GT by the segmenter preset (``"realistic"``, ``"gt"``, ``"0%"``..``"70%"``)
    or config given; lazily, deterministic per frame. The original is not modified.
    Raises ValueError when the frames have no GT instances."""
    name, config = _label_config(preset_name_or_config)
    probe = dataset.train[0] if len(dataset.train) else None
    if probe is None or probe.gt_instance is None:
        raise ValueError(f"scene {dataset.name!r}: simulating machine labels needs GT instance "
                         "maps (gt_instance) in the frames")
    meta = {**dataset.meta, "labels": {"simulated": name, "seed": int(seed),
                                       "config": dataclasses.asdict(config)}}
    return dataclasses.replace(
        dataset, train=SimulatedLabelFrames(dataset.train, config, seed, dataset.classes),
        test=SimulatedLabelFrames(dataset.test, config, seed, dataset.classes),
        label_variant=f"sim:{name}", meta=meta)


def own_labels(dataset: SceneDataset, variant: str) -> SceneDataset:
    """``dataset`` read again with its machine-label variant ``variant`` (a folder
    ``labels/<variant>`` beside the GT, e.g. from ``clusteringsdf segment``). ValueError
    when the scene has no folder or no such variant."""
    from clusteringsdf_core.data.formats import open_dataset

    if dataset.root is None:
        raise ValueError(f"scene {dataset.name!r} was not read from a folder: it has no machine-label variants")
    return open_dataset(dataset.root, labels=variant)
