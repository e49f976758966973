"""The training objective: which loss terms a batch of rays adds, with which weights.

Per view (:func:`add_view_losses`): the reconstruction terms (L_rgb, L_depth, L_sdf,
L_eikonal, :mod:`clusteringsdf_core.losses.reconstruction`) and the clustering terms
of the training mode (:mod:`clusteringsdf_core.losses.clustering`): instance mode
adds L_fg-bg, L_diff and L_reg over the view's label groups, semantic mode L_sem,
L_diff and L_reg over its classes (scaled by ``loss.semantic_clustering_scale``);
both add L_onehot after ``loss.onehot_start_fraction`` of training and the optional
L_opacity-label and L_violation. Across views (:func:`cross_view_rays`): the extra
rays of L_cross_view. The equations are in ``docs/METHOD.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from clusteringsdf_core.config import Config
from clusteringsdf_core.losses import clustering as lc
from clusteringsdf_core.losses import reconstruction as lr
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.training.views import TrainingView, view_rays

__all__ = ["reg_weight", "add_view_losses", "cross_view_rays"]

#: add(name, weight, term): adds ``weight * term()`` to the named loss term; ``term``
#: is only evaluated for a positive weight, so switched-off terms cost nothing.
AddTerm = Callable[[str, float, Callable[[], torch.Tensor]], None]


def reg_weight(cfg: Config) -> float:
    """lambda_reg for the model's channel count (``loss.reg_reference_channels``)."""
    ref = cfg.loss.reg_reference_channels
    if ref <= 0:
        return cfg.loss.lambda_reg
    return cfg.loss.lambda_reg * (cfg.model.num_channels / ref) ** 2


def add_view_losses(add: AddTerm, cfg: Config, view: TrainingView, pixels: torch.Tensor,
                    depth_t: torch.Tensor | None, out: dict, *, scale_m: float,
                    past: Callable[[float], bool],
                    violation_sdf: Callable[[], torch.Tensor | None]) -> torch.Tensor:
    """Add the loss terms of one view's rendered rays ``out`` (pixels ``pixels``, measured
    depth ``depth_t``). ``scale_m``: metres per normalised unit; ``past(fraction)``:
    whether training has reached that fraction (late terms); ``violation_sdf()``: the
    per-channel SDF at random points for L_violation (None: no points). Returns the
    softmax opacities of the rays (the channel-class statistics use them)."""
    lcfg = cfg.loss
    add("rgb", lcfg.rgb, lambda: lr.rgb_loss(out["rgb"], view.rgb[pixels]))
    if depth_t is not None:
        add("depth", lcfg.depth, lambda: lr.depth_loss(out["depth_t"], depth_t))
        add("sdf", lcfg.sdf, lambda: lr.depth_sdf_loss(out["scene_sdf"], out["t"], depth_t,
                                                       lcfg.sdf_truncation_m / scale_m))
    if "grad" in out:
        add("eikonal", lcfg.eikonal, lambda: lr.eikonal_loss(out["grad"]))
    opacity = out["opacity"]
    opacity_s = lc.softmax_opacity(opacity, lcfg.softmax_temperature)
    valid = view.valid[pixels]
    instance = view.instance[pixels]
    scale = 1.0
    if cfg.trainer.mode == "semantic":
        labels = view.semantic[pixels]
        scale = lcfg.semantic_clustering_scale
        conf = view.confidence[pixels] if view.confidence is not None else None
        keep = labels > 0
        groups = lc.RayGroups.dense(labels, opacity.shape[1], keep)   # class k = channel k
        add("sem", lcfg.lambda_sem, lambda: lc.semantic_loss(opacity, opacity_s, groups, conf,
                                                             definition=lcfg.definition))
    else:
        labels = instance
        keep = valid
        # the view's label groups, computed once (LabelIndex); invalid pixels take no part
        groups = lc.RayGroups(view.label_index.group[pixels], view.label_index.labels, keep.float())
        fg, bg = valid & (instance > 0), valid & (instance == 0)
        add("fg_bg", 1.0, lambda: lc.fg_bg_loss(opacity, fg, bg, lcfg.lambda_bg, lcfg.lambda_fg))
    add("diff", lcfg.lambda_diff * scale, lambda: lc.diff_loss(opacity_s, groups))
    add("reg", reg_weight(cfg) * scale, lambda: lc.reg_loss(opacity_s, groups, definition=lcfg.definition))
    if past(lcfg.onehot_start_fraction):
        add("onehot", lcfg.lambda_onehot,
            lambda: lc.onehot_loss(opacity, opacity_s, keep & (labels > 0),
                                   target=lcfg.onehot_target, labels=labels))
    add("opacity_label", lcfg.lambda_opacity_label,
        lambda: lc.opacity_label_loss(opacity, instance, valid))
    if lcfg.lambda_violation > 0 and past(lcfg.violation_start_fraction):
        sdf = violation_sdf()
        if sdf is not None:
            add("violation", lcfg.lambda_violation, lambda: lc.violation_loss(sdf))
    return opacity_s


def cross_view_rays(cfg: Config, views: list[TrainingView], box: SceneBox, render,
                    rng: np.random.Generator, generator: torch.Generator):
    """L_cross_view's extra rays: ``sampling.cross_view_rays`` uniform rays in each of
    ``sampling.cross_view_views`` random views with semantic labels, rendered by
    ``render`` (the model's). Returns (softmax opacities, classes) per view."""
    sc = cfg.sampling
    opacities, labels = [], []
    for _ in range(sc.cross_view_views):
        view = views[int(rng.integers(len(views)))]
        if view.semantic is None:
            continue
        pix = torch.randint(0, view.semantic.shape[0], (sc.cross_view_rays,), generator=generator,
                            device=generator.device)
        pixels, origins, dirs, depth_t = view_rays(view, pix, box)
        out = render(origins, dirs, depth_t=depth_t, depth_everywhere=view.depth_complete,
                     train=True, generator=generator)
        opacities.append(lc.softmax_opacity(out["opacity"], cfg.loss.softmax_temperature))
        labels.append(view.semantic[pixels])
    return opacities, labels
