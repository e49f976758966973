"""Training views: frames at the training resolution, as flat tensors on the device.

:func:`make_view` validates a :class:`~clusteringsdf_core.data.frame.Frame` against
the configuration (labels of the training mode, class ids that have channels), resizes
it to ``data.image_width x data.image_height``, masks depths outside
``data.depth_min_m..depth_max_m`` and indexes its labels once (:class:`LabelIndex`).
:func:`view_rays` turns pixels of a view into rays; :func:`surface_heights` measures
the floor and ceiling heights the views' depths saw. :func:`view_state` and
:func:`view_from_state` store a view compactly (lossless) for checkpoints of online
trainers, whose key frames exist nowhere else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import torch

from clusteringsdf_core.config import Config
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.render.rays import pixel_rays
from clusteringsdf_core.training.sampling import LabelIndex

__all__ = ["TrainingView", "make_view", "view_rays", "surface_heights", "view_state", "view_from_state"]


@dataclass
class TrainingView:
    """One frame at the training resolution, as flat tensors on the device."""

    index: int
    rgb: torch.Tensor                 # (P, 3) float in [0, 1]
    K: torch.Tensor                   # (3, 3)
    T_world_cam: torch.Tensor         # (4, 4)
    width: int
    height: int
    instance: torch.Tensor            # (P,) long, view-local ids, 0 = background
    valid: torch.Tensor               # (P,) bool: label usable (not "unknown")
    semantic: torch.Tensor | None     # (P,) long class ids, 0 = void
    confidence: torch.Tensor | None   # (P,) float
    depth_m: torch.Tensor | None      # (P,) float, 0 = invalid
    label_index: LabelIndex = field(repr=False, default=None)  # type: ignore[assignment]
    depth_complete: bool = False      # every pixel has a measured depth (no ray needs importance sampling)
    #: names the view's file in a checkpoint's key-frame folder (unique per view)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def num_labels(self) -> int:
        """Distinct foreground labels of the view (key-frame ranking): its instance
        labels, or its semantic classes when it has no instance label (semantic mode
        on a segmenter that gives classes only)."""
        ids = self.instance[self.valid]
        count = int(torch.unique(ids[ids > 0]).numel())
        if count == 0 and self.semantic is not None:
            classes = self.semantic[self.valid]
            count = int(torch.unique(classes[classes > 0]).numel())
        return count


def make_view(frame: Frame, config: Config, device: torch.device) -> TrainingView:
    """The training view of ``frame``; ValueError (with the reason) for a frame the
    configured mode cannot use."""
    frame.validate()
    mode = config.trainer.mode
    if frame.instance is None and mode == "instance":
        raise ValueError(f"frame {frame.index} has no instance labels")
    dc = config.data
    frame = frame.resized(dc.image_width, dc.image_height)

    def flat(a, dtype):
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a).reshape(-1), dtype=dtype,
                                                      device=device)

    instance = flat(frame.instance if frame.instance is not None else np.zeros(frame.rgb.shape[:2], np.int64),
                    torch.long)
    semantic = flat(frame.semantic, torch.long)
    depth = None
    if frame.depth_m is not None:
        d = frame.depth_m.astype(np.float32).copy()
        d[(d < dc.depth_min_m) | (d > dc.depth_max_m) | ~np.isfinite(d)] = 0.0
        depth = flat(d, torch.float32)
    # Negative ids (UNKNOWN_INSTANCE) are unknown; so is instance 0 with a void class
    # (e.g. a masked object): neither is background.
    valid = instance >= 0
    if semantic is not None:
        valid &= (instance > 0) | (semantic > 0)
    if mode == "semantic":
        if semantic is None:
            raise ValueError(f"frame {frame.index} has no semantic labels (semantic mode)")
        if int(semantic.max()) >= config.model.num_channels:
            raise ValueError(f"frame {frame.index}: class id {int(semantic.max())} has no channel")
    view = TrainingView(
        index=frame.index, rgb=torch.as_tensor(frame.rgb.reshape(-1, 3), device=device).float() / 255.0,
        K=torch.as_tensor(frame.intrinsics.K, dtype=torch.float32, device=device),
        T_world_cam=torch.as_tensor(frame.T_world_cam, dtype=torch.float32, device=device),
        width=frame.width, height=frame.height, instance=instance, valid=valid, semantic=semantic,
        confidence=flat(frame.confidence, torch.float32), depth_m=depth,
        depth_complete=depth is not None and bool((depth > 0).all()))
    view.label_index = LabelIndex(_label_groups(view, mode))
    return view


def _label_groups(view: TrainingView, mode: str) -> torch.Tensor:
    """The label each pixel's ray is grouped by in the clustering losses: the class in
    semantic mode, else the instance id, -1 where the label is unknown."""
    if mode == "semantic":
        return view.semantic
    return torch.where(view.valid, view.instance, torch.full_like(view.instance, -1))


def _smallest_int(a: np.ndarray) -> np.ndarray:
    """``a`` in the smallest integer type that holds its values (lossless)."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return a.astype(dtype)
    return a.astype(np.int64)


def view_state(view: TrainingView) -> dict:
    """``view`` as CPU numpy arrays, compactly and losslessly (colour as the 8-bit values
    it was made from, ids in the smallest integer type that holds them)."""
    def host(t):
        return None if t is None else t.detach().cpu().numpy()

    return {
        "uid": view.uid, "index": view.index, "width": view.width, "height": view.height,
        "rgb": np.round(host(view.rgb) * 255.0).astype(np.uint8),
        "K": host(view.K), "T_world_cam": host(view.T_world_cam),
        "instance": _smallest_int(host(view.instance)), "valid": host(view.valid),
        "semantic": None if view.semantic is None else _smallest_int(host(view.semantic)),
        "confidence": host(view.confidence), "depth_m": host(view.depth_m),
        "depth_complete": bool(view.depth_complete),
    }


def view_from_state(state: dict, mode: str, device: torch.device) -> TrainingView:
    """The view :func:`view_state` stored, on ``device``, with its label index rebuilt
    for the training ``mode``; equal to the original tensor for tensor."""
    def dev(a, dtype=None):
        return None if a is None else torch.as_tensor(np.asarray(a), device=device).to(dtype or torch.float32)

    view = TrainingView(
        index=int(state["index"]), rgb=torch.as_tensor(state["rgb"], device=device).float() / 255.0,
        K=dev(state["K"]), T_world_cam=dev(state["T_world_cam"]),
        width=int(state["width"]), height=int(state["height"]),
        instance=dev(state["instance"], torch.long), valid=dev(state["valid"], torch.bool),
        semantic=dev(state["semantic"], torch.long), confidence=dev(state["confidence"]),
        depth_m=dev(state["depth_m"]), depth_complete=bool(state["depth_complete"]), uid=str(state["uid"]))
    view.label_index = LabelIndex(_label_groups(view, mode))
    return view


def view_rays(view: TrainingView, pixels: torch.Tensor, box: SceneBox):
    """(pixels, origins, directions, depth_t) of flat pixel indices of ``view``:
    normalised-space rays, and the measured depth as the ray parameter t (None
    without depth)."""
    uv = torch.stack([pixels % view.width, pixels // view.width], dim=-1)
    origins, dirs, z_per_t = pixel_rays(view.K, view.T_world_cam, uv)
    depth_t = None
    if view.depth_m is not None:
        depth_t = view.depth_m[pixels] / z_per_t / box.scale
    return pixels, origins, dirs, depth_t


def surface_heights(views: list[TrainingView], box: SceneBox, points_per_view: int = 2000,
                    percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float] | None:
    """(floor z, ceiling z) in metres: low / high percentiles of the heights of the
    views' depth points, i.e. of the surfaces the camera saw; None without depth."""
    heights = []
    for view in views:
        if view.depth_m is None:
            continue
        valid = torch.nonzero(view.depth_m > 0)[:, 0]
        if valid.numel() == 0:
            continue
        pick = valid[torch.linspace(0, valid.numel() - 1, min(points_per_view, valid.numel()),
                                    device=valid.device).long()]
        _, origins, dirs, depth_t = view_rays(view, pick, box)
        heights.append((origins + dirs * (depth_t * box.scale)[:, None])[:, 2].cpu())
    if not heights:
        return None
    lo, hi = np.percentile(torch.cat(heights).numpy(), percentiles)
    return float(lo), float(hi)
