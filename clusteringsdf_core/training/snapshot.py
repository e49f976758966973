"""What extraction and publishing read of a trainer: an immutable copy of the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clusteringsdf_core.config import Config
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.model.scene_model import ClusteringSDFModel
from clusteringsdf_core.training.class_votes import ClassVotes

__all__ = ["Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of the model for extraction and publishing (CPU tensors)."""

    iteration: int
    state_dict: dict
    config: Config
    box_state: dict
    channel_classes: np.ndarray        # (c,) semantic class id per channel (0 = unknown)
    channel_confidence: np.ndarray     # (c,) label agreement of the channel (.channel_classes)
    stamp: float
    #: (floor z, ceiling z) in metres: low / high percentile of the heights of the training
    #: views' depth points (None: no depth). Stuff classes of rendered labels use them.
    surface_heights: tuple[float, float] | None = None
    #: machine-class votes per voxel (names the parts of split channels; None: not kept)
    class_votes: ClassVotes | None = None
    #: the factor the trainer applied to the scene lengths (config.lengths); the lengths
    #: of extraction and evaluation that are not in the tree follow it
    length_scale: float = 1.0

    def model(self, device: str | torch.device = "cpu") -> ClusteringSDFModel:
        model = ClusteringSDFModel(self.config, SceneBox.from_state_dict(self.box_state))
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()
