"""The optimiser and its schedule.

Adam over the model's parameter groups (the grids at ``trainer.grid_lr_factor`` times
the rate of the MLPs), the rate decayed exponentially to ``trainer.lr_final_factor``
of its start over the schedule's progress (:func:`lr_factor`), and an optimiser
carried over to a model whose grids grew (:func:`carried_over`).
"""

from __future__ import annotations

import torch

from clusteringsdf_core.config import TrainerConfig
from clusteringsdf_core.model.scene_model import ClusteringSDFModel, embed_tensor

__all__ = ["make_optimizer", "carried_over", "lr_factor", "preload_optimizer_modules"]


def preload_optimizer_modules() -> None:
    """Import what torch's first optimizer imports lazily (``torch._dynamo``, through the
    ``torch._compile`` wrapper of ``Optimizer.__init__``): 2.6 s on these 2 cores, and the
    rest of a Trainer's construction takes 0.12 s. The online engine calls this when it
    is made, before frames come: paid while the model was being created, it stalled the
    trainer thread for 5-8 s under the mapping node's load, and the 8-frame queue
    dropped 20-44 of the demo bag's 80 frames."""
    import torch._dynamo  # noqa: F401


def _adam(groups: list[dict], device: torch.device, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU and CUDA): the
    dense grids hold millions of parameters, and the default per-tensor loop on a CPU
    spent a quarter of each training step in the optimiser (334 -> 21 ms per step with
    the cpu preset's 9 M parameters on 2 cores)."""
    try:
        return torch.optim.Adam(groups, fused=device.type in ("cpu", "cuda"), **kwargs)
    except (RuntimeError, TypeError, ValueError):   # no fused kernel here: per-tensor loop
        return torch.optim.Adam(groups, **kwargs)


def make_optimizer(model: ClusteringSDFModel, tc: TrainerConfig, device: torch.device) -> torch.optim.Adam:
    """Adam over ``model``'s parameter groups with the trainer section's settings."""
    return _adam(model.parameter_groups(tc.lr, tc.grid_lr_factor), device,
                 betas=tuple(tc.adam_betas), eps=tc.adam_eps)


def carried_over(old: torch.optim.Adam, model: ClusteringSDFModel, tc: TrainerConfig,
                 device: torch.device) -> torch.optim.Adam:
    """An optimiser for ``model`` (grown from the one ``old`` optimised) holding ``old``'s
    state: the same parameters in the same order, so the moments (padded with zeros like
    the grids) and the groups' current learning rates load as they are."""
    optimizer = make_optimizer(model, tc, device)
    state = old.state_dict()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for index, moments in state["state"].items():
        for key, value in moments.items():
            if torch.is_tensor(value) and value.dim() > 0:
                moments[key] = embed_tensor(torch.zeros_like(params[index]), value)
    optimizer.load_state_dict(state)
    return optimizer


def lr_factor(tc: TrainerConfig, progress: float) -> float:
    """The learning rate's factor at ``progress`` (0..1) of the schedule.

    Online too: a constant rate kept the label field from settling (the grid's rate is
    grid_lr_factor times higher), which cost PQ and id stability; but decayed by the
    iteration count alone, views that arrive late were learned at the final rate
    (small streamed room: an object left in the background, two sharing a channel;
    with a constant rate each in its own channel), hence ``trainer.online_schedule``.
    """
    return tc.lr_final_factor ** progress
