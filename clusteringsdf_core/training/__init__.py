"""Training: the trainer and the pieces of its step.

- :mod:`.trainer`: :class:`Trainer` (views in, steps, snapshots, checkpoints);
- :mod:`.views`: frames as training views on the device, their rays;
- :mod:`.keyframes`: which views are kept (online buffer) and drawn;
- :mod:`.sampling`: which pixels of a view become rays;
- :mod:`.objective`: the loss terms a batch adds;
- :mod:`.optim`: Adam and the learning-rate schedule;
- :mod:`.seeding`: object channels' first centres on observed objects;
- :mod:`.channel_classes`, :mod:`.class_votes`: the machine classes channels and
  places were seen with;
- :mod:`.snapshot`: the immutable copy extraction reads.
"""

from clusteringsdf_core.training.snapshot import Snapshot
from clusteringsdf_core.training.trainer import Trainer, as_floats, resolve_device
from clusteringsdf_core.training.views import TrainingView

__all__ = ["Trainer", "TrainingView", "Snapshot", "resolve_device", "as_floats"]
