"""Training ClusteringSDF: offline on a dataset, online on a stream of frames.

The trainer owns the model, the optimiser and the training views (frames at the
training resolution, as tensors on the device). One ``step()``:

1. draws a view under the key-frame rules (:mod:`.keyframes`);
2. draws label-comprehensive rays in it (:mod:`.sampling`) and, for L_cross_view,
   a few rays of extra views;
3. renders them (:class:`~clusteringsdf_core.model.scene_model.ClusteringSDFModel`);
4. adds the reconstruction, SDF and clustering losses of the configured mode;
5. takes an Adam step with an exponentially decaying learning rate.

Online use: ``add_frame(frame)`` (validated, resized, offered to a bounded key-frame
buffer), ``step()``, ``snapshot()``. Checkpoints hold everything needed to resume
with identical next steps (model, optimiser, iteration, random generators, views).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clusteringsdf_core.class_votes import ClassVotes
from clusteringsdf_core.config import Config
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.keyframes import KeyframeBuffer, KeyframeSampler
from clusteringsdf_core.losses import clustering as lc
from clusteringsdf_core.losses import reconstruction as lr
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.model.scene_model import ClusteringSDFModel, embed_tensor
from clusteringsdf_core.render.rays import pixel_rays
from clusteringsdf_core.sampling import LabelIndex, label_comprehensive_pixels, uniform_pixels

__all__ = ["Trainer", "TrainingView", "Snapshot", "resolve_device", "as_floats"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device is {name!r} but CUDA is not available")
    return device


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


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of the model for extraction and publishing (CPU tensors)."""

    iteration: int
    state_dict: dict
    config: Config
    box_state: dict
    channel_classes: np.ndarray        # (c,) semantic class id per channel (0 = unknown)
    channel_confidence: np.ndarray     # (c,) share of the channel's rays agreeing with its class
    stamp: float
    #: (floor z, ceiling z) in metres: low / high percentile of the heights of the training
    #: views' depth points (None: no depth). Stuff classes of rendered labels use them.
    surface_heights: tuple[float, float] | None = None
    #: machine-class votes per voxel (names the parts of split channels; None: not kept)
    class_votes: ClassVotes | None = None

    def model(self, device: str | torch.device = "cpu") -> ClusteringSDFModel:
        model = ClusteringSDFModel(self.config, SceneBox.from_state_dict(self.box_state))
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def as_floats(losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Loss terms as floats, with one wait for the device for all of them."""
    tensors = [v.detach().float().reshape(()) for v in losses.values() if torch.is_tensor(v)]
    host = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
    return {k: (next(host) if torch.is_tensor(v) else float(v)) for k, v in losses.items()}


def _reg_weight(cfg: Config) -> float:
    """lambda_reg for the model's channel count (``loss.reg_reference_channels``)."""
    ref = cfg.loss.reg_reference_channels
    if ref <= 0:
        return cfg.loss.lambda_reg
    return cfg.loss.lambda_reg * (cfg.model.num_channels / ref) ** 2


def _adam(groups: list[dict], device: torch.device, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device (CPU and CUDA): the
    dense grids hold millions of parameters, and the default per-tensor loop on a CPU
    spent a quarter of each training step in the optimiser (334 -> 21 ms per step with
    the cpu preset's 9 M parameters on 2 cores)."""
    try:
        return torch.optim.Adam(groups, fused=device.type in ("cpu", "cuda"), **kwargs)
    except (RuntimeError, TypeError, ValueError):   # no fused kernel here: per-tensor loop
        return torch.optim.Adam(groups, **kwargs)


class Trainer:
    def __init__(self, config: Config, bounds_m: np.ndarray | SceneBox, *,
                 classes: ClassTable = SCANNET_REDUCED, device: str | torch.device | None = None):
        self.config = config
        self.classes = classes
        self.device = resolve_device(str(device) if device is not None else config.trainer.device)
        if config.trainer.num_threads and self.device.type == "cpu":
            torch.set_num_threads(config.trainer.num_threads)
        torch.manual_seed(config.trainer.seed)
        self.box = bounds_m if isinstance(bounds_m, SceneBox) else \
            SceneBox(bounds_m, padding_m=config.render.bounds_padding_m)
        self.model = ClusteringSDFModel(config, self.box).to(self.device)
        tc = config.trainer
        self.optimizer = _adam(self.model.parameter_groups(tc.lr, tc.grid_lr_factor), self.device,
                               betas=tuple(tc.adam_betas), eps=tc.adam_eps)
        self._base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.iteration = 0
        # Iterations the schedule counts: the iteration offline; online each new key frame
        # takes its share off (trainer.online_schedule). The progress is this / iterations.
        self.schedule_iteration = 0.0
        self._saved_heights: tuple[float, float] | None = None   # from a checkpoint without views
        self._heights: tuple[float, float] | None = None         # of the current views (cached)
        self._heights_views: list | None = None                  # the views they were computed for
        self.rng = np.random.default_rng(tc.seed)
        # on the device of the tensors it fills (CUDA refuses a CPU generator for them)
        self.generator = torch.Generator(device=self.device).manual_seed(tc.seed)
        self.views: list[TrainingView] = []
        self.buffer: KeyframeBuffer[TrainingView] = KeyframeBuffer(config.keyframes)
        self.sampler = KeyframeSampler([], config.keyframes)
        self.online = False
        self._seeds_placed = False
        self._seeds_count = 0             # object channels whose centre sits on observed surfaces
        c, k = config.model.num_channels, len(classes)
        self.channel_class_counts = torch.zeros(c, k, dtype=torch.float64, device=self.device)
        # where the segmenter saw which class: names the parts of split channels
        self.class_votes = (ClassVotes(k) if config.extract.split_channels and config.trainer.mode == "instance"
                            else None)
        self._last_losses: dict[str, torch.Tensor] = {}
        if config.trainer.mode == "semantic" and config.model.num_channels < len(classes):
            raise ValueError(f"semantic mode needs model.num_channels >= {len(classes)} (one channel "
                             f"per class), got {config.model.num_channels}")

    # ------------------------------------------------------------------ data
    @classmethod
    def from_dataset(cls, dataset, config: Config, **kwargs) -> "Trainer":
        """A trainer holding every training frame of ``dataset`` (a SceneDataset)."""
        bounds = dataset.bounds
        if bounds is None:
            raise ValueError(f"dataset {dataset.name} has no scene bounds")
        trainer = cls(config, bounds, classes=dataset.classes, **kwargs)
        trainer._load_views(dataset)
        return trainer

    def _load_views(self, dataset) -> None:
        """The training views of an offline dataset (at most data.max_frames, evenly spread)."""
        frames = list(dataset.train)
        limit = self.config.data.max_frames
        if limit:
            frames = frames[::max(1, len(frames) // limit)][:limit]
        self.views = [self._make_view(f) for f in frames]
        self.sampler.update([v.num_labels for v in self.views])

    def _make_view(self, frame: Frame) -> TrainingView:
        frame.validate()
        if frame.instance is None and self.config.trainer.mode == "instance":
            raise ValueError(f"frame {frame.index} has no instance labels")
        dc = self.config.data
        frame = frame.resized(dc.image_width, dc.image_height)
        dev = self.device

        def flat(a, dtype):
            return None if a is None else torch.as_tensor(np.ascontiguousarray(a).reshape(-1), dtype=dtype, device=dev)

        instance = flat(frame.instance if frame.instance is not None else np.zeros(frame.rgb.shape[:2], np.int64),
                        torch.long)
        semantic = flat(frame.semantic, torch.long)
        depth = None
        if frame.depth_m is not None:
            d = frame.depth_m.astype(np.float32).copy()
            d[(d < dc.depth_min_m) | (d > dc.depth_max_m) | ~np.isfinite(d)] = 0.0
            depth = flat(d, torch.float32)
        if semantic is not None:
            # Instance 0 with a void class is "unknown" (e.g. a masked object), not background.
            valid = (instance > 0) | (semantic > 0)
        else:
            valid = torch.ones_like(instance, dtype=torch.bool)
        if self.config.trainer.mode == "semantic":
            if semantic is None:
                raise ValueError(f"frame {frame.index} has no semantic labels (semantic mode)")
            if int(semantic.max()) >= self.config.model.num_channels:
                raise ValueError(f"frame {frame.index}: class id {int(semantic.max())} has no channel")
            group = semantic
        else:
            group = torch.where(valid, instance, torch.full_like(instance, -1))
        view = TrainingView(
            index=frame.index, rgb=torch.as_tensor(frame.rgb.reshape(-1, 3), device=dev).float() / 255.0,
            K=torch.as_tensor(frame.intrinsics.K, dtype=torch.float32, device=dev),
            T_world_cam=torch.as_tensor(frame.T_world_cam, dtype=torch.float32, device=dev),
            width=frame.width, height=frame.height, instance=instance, valid=valid, semantic=semantic,
            confidence=flat(frame.confidence, torch.float32), depth_m=depth,
            depth_complete=depth is not None and bool((depth > 0).all()))
        view.label_index = LabelIndex(group)
        return view

    def add_frame(self, frame: Frame) -> bool:
        """Online: validate and offer a frame to the key-frame buffer; True if kept.

        Raises ValueError (with the reason) for a frame that cannot be used; nothing
        learned so far is touched.
        """
        view = self._make_view(frame)
        self.online = True
        accepted, _ = self.buffer.offer(view, frame.T_world_cam, view.num_labels)
        if accepted:
            self.views = self.buffer.items()
            if self.config.trainer.online_schedule == "rewind":
                # The new view has had no training: the key frames' mean progress drops by its share.
                self.schedule_iteration *= (len(self.views) - 1) / len(self.views)
            self.sampler.update(self.buffer.label_counts())
            if self._seeds_placed and self._seeds_count < self._seed_budget:
                # objects that came into view get centres of their own
                self._extend_seeds(self._foreground_points([view]))
        return accepted

    def grow(self, bounds_m: np.ndarray) -> bool:
        """Online: make the model cover ``bounds_m`` (metres) too. The normalisation frame
        stays, the represented volume becomes the union (:meth:`SceneBox.grown`), the
        grids get cells around the old ones (:meth:`ClusteringSDFModel.grown`) and the
        optimiser's moments follow them, so nothing learned is lost. False if the volume
        already covered ``bounds_m``."""
        box = self.box.grown(bounds_m)
        if np.allclose(box.bounds_m, self.box.bounds_m):
            return False
        model = self.model.grown(box)
        tc = self.config.trainer
        optimizer = _adam(model.parameter_groups(tc.lr, tc.grid_lr_factor), self.device,
                          betas=tuple(tc.adam_betas), eps=tc.adam_eps)
        # The same parameters in the same order: the old state (moments padded like the
        # grids, the groups' current learning rates) loads as it is.
        state = self.optimizer.state_dict()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for index, moments in state["state"].items():
            for key, value in moments.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    moments[key] = embed_tensor(torch.zeros_like(params[index]), value)
        optimizer.load_state_dict(state)
        self.model, self.optimizer, self.box = model, optimizer, box
        return True

    def update_live(self, config: Config) -> None:
        """Take the loss weights and learning rate of ``config`` while training goes on
        (the rest of ``config`` needs a new trainer). The optimizer state is kept."""
        self.config = dataclasses.replace(self.config, loss=config.loss,
                                          trainer=self.config.trainer.replace(lr=config.trainer.lr))
        self.model.config = self.config          # the model reads loss.* when rendering
        factor = self.config.trainer.grid_lr_factor
        self._base_lrs = [self.config.trainer.lr * (factor if g.get("name") == "grid" else 1.0)
                          for g in self.optimizer.param_groups]
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * self._lr_factor()

    # ------------------------------------------------------------------ training
    def _lr_factor(self) -> float:
        # Online too: a constant rate kept the label field from settling (the grid's rate
        # is grid_lr_factor times higher), which cost PQ and id stability; but decayed by
        # the iteration count alone, views that arrive late were learned at the final rate
        # (small streamed room: an object left in the background, two sharing a channel;
        # with a constant rate each in its own channel).
        return self.config.trainer.lr_final_factor ** self.progress

    @property
    def progress(self) -> float:
        """How far the schedule is, 0..1: ``schedule_iteration / trainer.iterations``."""
        return min(1.0, self.schedule_iteration / max(1, self.config.trainer.iterations))

    def _rays(self, view: TrainingView, pixels: torch.Tensor):
        uv = torch.stack([pixels % view.width, pixels // view.width], dim=-1)
        origins, dirs, z_per_t = pixel_rays(view.K, view.T_world_cam, uv)
        depth_t = None
        if view.depth_m is not None:
            depth_t = view.depth_m[pixels] / z_per_t / self.box.scale
        return pixels, origins, dirs, depth_t

    def _eikonal_points(self, n: int) -> torch.Tensor | None:
        if n <= 0 or self.config.loss.eikonal <= 0:
            return None
        lo, hi = self.model.domain_lo, self.model.domain_hi
        u = torch.rand(n, 3, generator=self.generator, device=self.device)
        return lo + u * (hi - lo)

    def _foreground_points(self, views, max_points_per_view: int = 2000) -> torch.Tensor | None:
        """One point per labelled 2D segment of ``views`` (normalised coordinates): the
        segment pixel whose back-projected depth is nearest the segment's coordinate-wise
        median, i.e. a point on the object the segmenter saw."""
        points = []
        for view in views:
            if view.depth_m is None:
                continue
            fg = torch.nonzero((view.instance > 0) & view.valid & (view.depth_m > 0))[:, 0]
            if fg.numel() == 0:
                continue
            if fg.numel() > max_points_per_view:
                fg = fg[torch.randperm(fg.numel(), generator=self.generator, device=fg.device)[:max_points_per_view]]
            _, origins, dirs, depth_t = self._rays(view, fg)
            xyz = self.box.to_normalised(origins + dirs * depth_t[:, None] * self.box.scale)
            labels = view.instance[fg]
            for label in torch.unique(labels):
                seg = xyz[labels == label]
                median = seg.median(dim=0).values
                points.append(seg[(seg - median).norm(dim=-1).argmin()])
        return torch.stack(points) if points else None

    @property
    def _seed_budget(self) -> int:
        """Object channels whose centre may be placed on observed objects."""
        mc = self.config.model
        return int(round(mc.init_seeds_observed * (mc.num_channels - 1)))

    def _extend_seeds(self, pts: torch.Tensor | None) -> int:
        """Farthest-point sampling over ``pts`` that adds object channel centres while a
        point lies more than ``model.init_seed_spacing_m`` from every placed centre and
        the share ``model.init_seeds_observed`` is not used up. Returns how many it added."""
        mc = self.config.model
        budget = self._seed_budget
        net = self.model.sdf_net
        if pts is None or pts.shape[0] == 0 or self._seeds_count >= budget or not net.geometric_init:
            return 0
        spacing = mc.init_seed_spacing_m / self.box.scale
        centres = net.sphere_centres
        if self._seeds_count:
            dist = torch.cdist(pts, centres[1:1 + self._seeds_count].to(pts)).min(dim=1).values
        else:
            dist = torch.full((pts.shape[0],), float("inf"), device=pts.device)
        added = 0
        while self._seeds_count < budget:
            i = int(dist.argmax()) if self._seeds_count else int(torch.randint(
                pts.shape[0], (1,), generator=self.generator, device=self.device))
            if float(dist[i]) <= spacing:
                break
            with torch.no_grad():
                centres[1 + self._seeds_count] = pts[i].to(centres)
            self._seeds_count += 1
            added += 1
            dist = torch.minimum(dist, (pts - pts[i]).norm(dim=-1))
        return added

    def place_channel_seeds(self, max_points_per_view: int = 2000) -> int:
        """Put object channels' initial centres on observed objects (at most the share
        ``model.init_seeds_observed`` of them, ``model.init_seed_spacing_m`` apart:
        farthest-point sampling over one point per labelled 2D segment of the current
        views), so that each object seen starts near a channel of its own
        instead of sharing a random one; the other channels keep their random centres.
        Runs at the first step; online, later frames add centres for segments
        farther than the spacing from every centre placed. Returns how many
        centres were placed."""
        self._seeds_placed = True
        return self._extend_seeds(self._foreground_points(self.views, max_points_per_view))

    def step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the loss terms as detached 0-d tensors on the
        trainer's device (``float()`` of one waits for the device: read them every
        ``trainer.log_every`` steps, or through :attr:`last_losses`)."""
        if not self.views:
            raise RuntimeError("no training views: add frames first")
        if not self._seeds_placed and self.iteration == 0:
            self.place_channel_seeds()
        cfg = self.config
        lcfg, sc = cfg.loss, cfg.sampling
        self.model.train()
        factor = self._lr_factor()
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor
        terms: dict[str, torch.Tensor] = {}

        def add(name: str, weight: float, term: Callable[[], torch.Tensor]) -> None:
            # ``term`` is only evaluated for a positive weight: switched-off terms cost nothing.
            if weight > 0:
                terms[name] = terms.get(name, 0.0) + weight * term()

        rays_per_view = max(1, sc.rays_per_batch // sc.images_per_batch)
        sem_opacities, sem_labels = [], []
        for v_i in range(sc.images_per_batch):
            view = self.views[self.sampler.draw(self.rng)]
            if sc.label_comprehensive:
                pix = label_comprehensive_pixels(view.label_index, rays_per_view,
                                                 per_label_share=sc.per_label_share, generator=self.generator)
            else:
                pix = uniform_pixels(int(view.label_index.order.shape[0]), rays_per_view, self.generator)
            pixels, origins, dirs, depth_t = self._rays(view, pix)
            out = self.model.render(origins, dirs, depth_t=depth_t, depth_everywhere=view.depth_complete,
                                    train=True,
                                    eikonal_points=self._eikonal_points(lcfg.eikonal_points if v_i == 0 else 0),
                                    want_normals=False, generator=self.generator)
            if self.class_votes is not None and depth_t is not None and view.semantic is not None:
                seen = view.valid[pixels] & (view.instance[pixels] > 0) & (depth_t > 0)
                self.class_votes.add(origins + dirs * (depth_t[:, None] * self.box.scale),
                                     torch.where(seen, view.semantic[pixels], 0))
            self._add_view_losses(view, pixels, depth_t, out, add)
            if lcfg.lambda_cross_view > 0 and view.semantic is not None:
                sem_opacities.append(lc.softmax_opacity(out["opacity"], lcfg.softmax_temperature))
                sem_labels.append(view.semantic[pixels])
        if lcfg.lambda_cross_view > 0 and sem_opacities:
            extra_o, extra_l = self._cross_view_rays()
            add("cross_view", lcfg.lambda_cross_view,
                lambda: lc.cross_view_loss(sem_opacities[:1] + extra_o, sem_labels[:1] + extra_l,
                                           num_classes=len(self.classes)))
        total = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.iteration += 1
        self.schedule_iteration += 1.0
        losses = {k: v.detach() for k, v in terms.items()}
        losses["total"] = total.detach()
        losses["beta"] = self.model.density.beta.detach().clone()
        self._last_losses = losses
        return losses

    @property
    def last_losses(self) -> dict[str, float]:
        """The last step's loss terms as floats (waits for the device)."""
        return as_floats(self._last_losses)

    def _past(self, fraction: float) -> bool:
        """Whether training has reached ``fraction`` of ``trainer.iterations`` (a late
        term's start). The iteration count is used, offline and online alike: the
        online learning-rate schedule's rewinds do not switch late terms off again."""
        return self.iteration >= fraction * self.config.trainer.iterations

    def _add_view_losses(self, view: TrainingView, pixels, depth_t, out, add) -> None:
        cfg = self.config
        lcfg = cfg.loss
        add("rgb", lcfg.rgb, lambda: lr.rgb_loss(out["rgb"], view.rgb[pixels]))
        if depth_t is not None:
            add("depth", lcfg.depth, lambda: lr.depth_loss(out["depth_t"], depth_t))
            add("sdf", lcfg.sdf, lambda: lr.depth_sdf_loss(out["scene_sdf"], out["t"], depth_t,
                                                           lcfg.sdf_truncation_m / self.box.scale))
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
        add("reg", _reg_weight(cfg) * scale, lambda: lc.reg_loss(opacity_s, groups, definition=lcfg.definition))
        if self._past(lcfg.onehot_start_fraction):
            add("onehot", lcfg.lambda_onehot,
                lambda: lc.onehot_loss(opacity, opacity_s, keep & (labels > 0),
                                       target=lcfg.onehot_target, labels=labels))
        add("opacity_label", lcfg.lambda_opacity_label,
            lambda: lc.opacity_label_loss(opacity, instance, valid))
        if lcfg.lambda_violation > 0 and self._past(lcfg.violation_start_fraction):
            pts = self._eikonal_points(256)
            if pts is not None:
                add("violation", lcfg.lambda_violation,
                    lambda: lc.violation_loss(self.model.sdf_net.sdf(pts)))
        if view.semantic is not None and cfg.trainer.mode == "instance":
            self._update_channel_classes(opacity_s.detach(), view.semantic[pixels], valid & (instance > 0))

    def _cross_view_rays(self):
        sc = self.config.sampling
        opacities, labels = [], []
        for _ in range(sc.cross_view_views):
            view = self.views[int(self.rng.integers(len(self.views)))]
            if view.semantic is None:
                continue
            pix = torch.randint(0, view.semantic.shape[0], (sc.cross_view_rays,), generator=self.generator,
                                device=self.device)
            pixels, origins, dirs, depth_t = self._rays(view, pix)
            out = self.model.render(origins, dirs, depth_t=depth_t, depth_everywhere=view.depth_complete,
                                    train=True, generator=self.generator)
            opacities.append(lc.softmax_opacity(out["opacity"], self.config.loss.softmax_temperature))
            labels.append(view.semantic[pixels])
        return opacities, labels

    def _update_channel_classes(self, opacity_s: torch.Tensor, semantic: torch.Tensor, foreground: torch.Tensor) -> None:
        """Accumulate (channel, machine class) co-occurrence over foreground rays to name
        each channel's class."""
        counts = self.channel_class_counts
        keep = foreground & (semantic > 0) & (semantic < counts.shape[1])
        channel = opacity_s.argmax(-1)
        cls = torch.where(keep, semantic, 0)      # masks as weights: no host round trip
        decay = torch.where(keep.any(), 0.998, 1.0).to(counts.dtype)     # views with foreground rays only
        self.channel_class_counts = counts.mul_(decay).index_put_((channel, cls), keep.to(counts.dtype),
                                                                  accumulate=True)

    def channel_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(class id per channel, confidence per channel) from the accumulated co-occurrences.

        In semantic mode channel k is class k. In instance mode a channel takes the
        most frequent machine class of its rays; channel 0 is background (class 0).
        """
        c = self.config.model.num_channels
        if self.config.trainer.mode == "semantic":
            return np.arange(c), np.ones(c)
        counts = self.channel_class_counts.cpu().numpy().copy()
        counts[:, 0] = 0
        total = counts.sum(1)
        classes = counts.argmax(1)
        conf = np.where(total > 0, counts.max(1) / np.maximum(total, 1e-9), 0.0)
        classes[total == 0] = 0
        classes[0] = 0
        return classes, conf

    def fit(self, iterations: int | None = None, *, progress: bool | None = None,
            callback=None, time_budget_s: float | None = None) -> dict[str, float]:
        """Train offline for ``iterations`` (default: trainer.iterations minus those done)."""
        total = self.config.trainer.iterations if iterations is None else self.iteration + iterations
        show = self.config.trainer.progress_bar if progress is None else progress
        from tqdm import tqdm

        bar = tqdm(total=total, initial=self.iteration, desc="training", unit="it", disable=not show or None,
                   dynamic_ncols=True)
        started = time.perf_counter()
        losses: dict[str, float] = {}
        try:
            while self.iteration < total:
                self.step()
                bar.update(1)
                if self.iteration % self.config.trainer.log_every == 0 or self.iteration == total:
                    losses = self.last_losses        # the one host round trip of the interval
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if k in ("total", "rgb", "diff", "eikonal")})
                    log.info("it %d %s", self.iteration, " ".join(f"{k}={v:.4g}" for k, v in losses.items()))
                if callback is not None:
                    callback(self)
                if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                    break
        finally:
            bar.close()
        return losses

    # ------------------------------------------------------------------ outputs
    def snapshot(self) -> Snapshot:
        classes, conf = self.channel_classes()
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        votes = (None if self.class_votes is None
                 else ClassVotes.from_state_dict(self.class_votes.state_dict()))
        return Snapshot(self.iteration, state, self.config, self.box.state_dict(), classes, conf, time.time(),
                        self.surface_heights(), votes)

    def surface_heights(self) -> tuple[float, float] | None:
        """(floor z, ceiling z): low / high percentiles of the heights of the views' depth
        points (metres), i.e. of the surfaces the camera saw; None without depth. Kept in
        checkpoints for a trainer restored without its views. Cached until the views change
        (every snapshot asks: the node takes one per extraction)."""
        if not self.views:
            return self._saved_heights
        key = [id(v) for v in self.views]
        if self._heights_views != key:
            self._heights, self._heights_views = self._measure_heights(), key
        return self._heights

    def _measure_heights(self, points_per_view: int = 2000,
                         percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float] | None:
        heights = []
        for view in self.views:
            if view.depth_m is None:
                continue
            valid = torch.nonzero(view.depth_m > 0)[:, 0]
            if valid.numel() == 0:
                continue
            pick = valid[torch.linspace(0, valid.numel() - 1, min(points_per_view, valid.numel()),
                                        device=valid.device).long()]
            _, origins, dirs, depth_t = self._rays(view, pick)
            heights.append((origins + dirs * (depth_t * self.box.scale)[:, None])[:, 2].cpu())
        if not heights:
            return None
        lo, hi = np.percentile(torch.cat(heights).numpy(), percentiles)
        return float(lo), float(hi)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": "clusteringsdf-checkpoint/1",
            "config": self.config.to_dict(),
            "box": self.box.state_dict(),
            "classes": self.classes.to_list(),
            "iteration": self.iteration,
            "schedule_iteration": self.schedule_iteration,
            "surface_heights": self.surface_heights(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
            "channel_class_counts": self.channel_class_counts.cpu(),
            "class_votes": None if self.class_votes is None else self.class_votes.state_dict(),
            "online": self.online,
            "seeds": [self._seeds_placed, self._seeds_count],
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load_state(self, state: dict) -> None:
        if state.get("format") != "clusteringsdf-checkpoint/1":
            raise ValueError("not a clusteringsdf checkpoint")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.schedule_iteration = float(state.get("schedule_iteration", self.iteration))
        heights = state.get("surface_heights")
        self._saved_heights = None if heights is None else (float(heights[0]), float(heights[1]))
        self.rng.bit_generator.state = state["rng"]
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, TypeError, ValueError):
            # a checkpoint of another device type: its generator state does not fit this one
            log.warning("checkpoint random state is for another device; reseeding the %s generator",
                        self.device.type)
            self.generator.manual_seed(self.config.trainer.seed + self.iteration)
        self.channel_class_counts = state["channel_class_counts"].to(self.device, torch.float64, copy=True)
        if self.class_votes is not None and state.get("class_votes") is not None:
            self.class_votes = ClassVotes.from_state_dict(state["class_votes"])
        self.online = bool(state.get("online", False))
        self._seeds_placed, self._seeds_count = state.get("seeds", [self.iteration > 0, 0])

    @classmethod
    def load_checkpoint(cls, path: str | Path, *, dataset=None, device=None) -> "Trainer":
        """Rebuild a trainer from a checkpoint; offline checkpoints re-read their views
        from ``dataset`` (the same frames they were trained on). A field the checkpoint
        predates takes its ``Config()`` default (new fields default to the old behaviour)."""
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
        config = Config.from_dict(state["config"], partial=True)
        classes = ClassTable.from_list(state["classes"])
        trainer = cls(config, SceneBox.from_state_dict(state["box"]), classes=classes, device=device)
        if dataset is not None:
            trainer._load_views(dataset)
        trainer.load_state(state)
        return trainer

