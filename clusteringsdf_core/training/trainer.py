"""Training ClusteringSDF: offline on a dataset, online on a stream of frames.

The trainer owns the model, the optimiser and the training views (frames at the
training resolution, as tensors on the device, :mod:`.views`). One ``step()``:

1. draws a view under the key-frame rules (:mod:`.keyframes`);
2. draws label-comprehensive rays in it (:mod:`.sampling`) and, for L_cross_view,
   a few rays of extra views;
3. renders them (:class:`~clusteringsdf_core.model.scene_model.ClusteringSDFModel`);
4. adds the reconstruction, SDF and clustering losses of the configured mode
   (:mod:`.objective`);
5. takes an Adam step with an exponentially decaying learning rate (:mod:`.optim`).

Online use: ``add_frame(frame)`` (validated, resized, offered to a bounded key-frame
buffer), ``step()``, ``snapshot()``. Checkpoints hold everything needed to resume
with identical next steps (model, optimiser, iteration, random generators, and the
views: an offline trainer's are re-read from its dataset, an online trainer's key
frames are written beside the checkpoint, :mod:`.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from clusteringsdf_core.config import Config
from clusteringsdf_core.config.lengths import resolve_lengths, scaled_like
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.losses import clustering as lc
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.model.scene_model import ClusteringSDFModel
from clusteringsdf_core.training import objective, optim
from clusteringsdf_core.training.checkpoint import (CHECKPOINT_FORMAT, KEYFRAME_DIR, keyframe_uids,
                                                    read_checkpoint, read_keyframes, write_checkpoint)
from clusteringsdf_core.training.channel_classes import ChannelClassCounts
from clusteringsdf_core.training.class_votes import ClassVotes
from clusteringsdf_core.training.keyframes import KeyframeBuffer, KeyframeSampler
from clusteringsdf_core.training.sampling import label_comprehensive_pixels, uniform_pixels
from clusteringsdf_core.training.seeding import ChannelSeeds, foreground_points
from clusteringsdf_core.training.snapshot import Snapshot
from clusteringsdf_core.training.views import TrainingView, make_view, surface_heights, view_rays

__all__ = ["Trainer", "resolve_device", "as_floats"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device is {name!r} but CUDA is not available")
    return device


def as_floats(losses: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Loss terms as floats, with one wait for the device for all of them."""
    tensors = [v.detach().float().reshape(()) for v in losses.values() if torch.is_tensor(v)]
    host = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
    return {k: (next(host) if torch.is_tensor(v) else float(v)) for k, v in losses.items()}


class Trainer:
    def __init__(self, config: Config, bounds_m: np.ndarray | SceneBox, *,
                 classes: ClassTable = SCANNET_REDUCED, device: str | torch.device | None = None,
                 length_scale: float | None = None):
        """``config``'s scene lengths are resolved for the bounds (:mod:`~clusteringsdf_core.
        config.lengths`; ``self.config`` holds the lengths used, ``self.length_scale`` the
        factor). ``length_scale``: the factor a caller already applied to ``config``."""
        config, derived = resolve_lengths(config, bounds_m.bounds_m if isinstance(bounds_m, SceneBox)
                                          else bounds_m)
        self.length_scale = derived if length_scale is None else float(length_scale)
        if derived != 1.0:
            log.info("scene lengths x %.3g (data.length_scale, or the scene's side over "
                     "data.reference_side_m): seed spacing %.3g m, SDF truncation %.3g m", derived,
                     config.model.init_seed_spacing_m, config.loss.sdf_truncation_m)
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
        self.optimizer = optim.make_optimizer(self.model, tc, self.device)
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
        self.seeds = ChannelSeeds(config.model)
        self.class_counts = ChannelClassCounts(config.model.num_channels, len(classes), self.device,
                                               semantic=tc.mode == "semantic")
        # where the segmenter saw which class: names the parts of split channels
        self.class_votes = (ClassVotes(len(classes), voxel_m=0.1 * self.length_scale)
                            if config.extract.split_channels and tc.mode == "instance"
                            else None)
        self._last_losses: dict[str, torch.Tensor] = {}
        if tc.mode == "semantic" and config.model.num_channels < len(classes):
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
        self.views = [make_view(f, self.config, self.device) for f in frames]
        self.sampler.update([v.num_labels for v in self.views])

    def add_frame(self, frame: Frame) -> bool:
        """Online: validate and offer a frame to the key-frame buffer; True if kept.

        Raises ValueError (with the reason) for a frame that cannot be used; nothing
        learned so far is touched.
        """
        view = make_view(frame, self.config, self.device)
        self.online = True
        accepted, _ = self.buffer.offer(view, frame.T_world_cam, view.num_labels)
        if accepted:
            self.views = self.buffer.items()
            if self.config.trainer.online_schedule == "rewind":
                # The new view has had no training: the key frames' mean progress drops by its share.
                self.schedule_iteration *= (len(self.views) - 1) / len(self.views)
            self.sampler.update(self.buffer.label_counts())
            if self.seeds.placed and not self.seeds.full:
                # objects that came into view get centres of their own
                self._extend_seeds([view])
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
        self.optimizer = optim.carried_over(self.optimizer, model, self.config.trainer, self.device)
        self.model, self.box = model, box
        return True

    def update_live(self, config: Config) -> None:
        """Take the loss weights and learning rate of ``config`` while training goes on
        (the rest of ``config`` needs a new trainer). The optimizer state is kept."""
        loss = scaled_like(config.loss, config.data.length_scale, self.length_scale)
        self.config = dataclasses.replace(self.config, loss=loss,
                                          trainer=self.config.trainer.replace(lr=config.trainer.lr))
        self.model.config = self.config          # the model reads loss.* when rendering
        factor = self.config.trainer.grid_lr_factor
        self._base_lrs = [self.config.trainer.lr * (factor if g.get("name") == "grid" else 1.0)
                          for g in self.optimizer.param_groups]
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * self.lr_factor

    # ------------------------------------------------------------------ training
    @property
    def progress(self) -> float:
        """How far the schedule is, 0..1: ``schedule_iteration / trainer.iterations``."""
        return min(1.0, self.schedule_iteration / max(1, self.config.trainer.iterations))

    @property
    def lr_factor(self) -> float:
        """The learning rate's factor at the current progress (:func:`.optim.lr_factor`)."""
        return optim.lr_factor(self.config.trainer, self.progress)

    def rays(self, view: TrainingView, pixels: torch.Tensor):
        """(pixels, origins, directions, depth_t) of flat pixel indices of ``view``."""
        return view_rays(view, pixels, self.box)

    def random_points(self, n: int) -> torch.Tensor | None:
        """``n`` uniform points in the model's domain (normalised; the eikonal points),
        None for n = 0 or without the eikonal term."""
        if n <= 0 or self.config.loss.eikonal <= 0:
            return None
        lo, hi = self.model.domain_lo, self.model.domain_hi
        u = torch.rand(n, 3, generator=self.generator, device=self.device)
        return lo + u * (hi - lo)

    def foreground_points(self, views, max_points_per_view: int = 2000) -> torch.Tensor | None:
        """One point per labelled 2D segment of ``views`` (:func:`.seeding.foreground_points`)."""
        return foreground_points(views, self.box, self.generator, max_points_per_view)

    def _extend_seeds(self, views, max_points_per_view: int = 2000) -> int:
        # the points first, always: their draws keep the random stream of every configuration
        points = self.foreground_points(views, max_points_per_view)
        if not self.model.sdf_net.geometric_init:
            return 0
        return self.seeds.extend(self.model.sdf_net.sphere_centres, points, self.box.scale, self.generator,
                                 usage=self.class_counts.agreement[:, 1], owner=self._owner)

    @torch.no_grad()
    def _owner(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) the channel of smallest SDF at normalised ``points`` (N, 3)."""
        return self.model.sdf_net.sdf(points.to(self.device)).argmin(dim=-1)

    def place_channel_seeds(self, max_points_per_view: int = 2000) -> int:
        """Put object channels' initial centres on observed objects of the current views
        (:class:`.seeding.ChannelSeeds`); runs at the first step. Returns how many
        centres were placed."""
        self.seeds.placed = True
        return self._extend_seeds(self.views, max_points_per_view)

    def step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the loss terms as detached 0-d tensors on the
        trainer's device (``float()`` of one waits for the device: read them every
        ``trainer.log_every`` steps, or through :attr:`last_losses`)."""
        if not self.views:
            raise RuntimeError("no training views: add frames first")
        if not self.seeds.placed and self.iteration == 0:
            self.place_channel_seeds()
        cfg = self.config
        lcfg, sc = cfg.loss, cfg.sampling
        self.model.train()
        factor = self.lr_factor
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor
        terms: dict[str, torch.Tensor] = {}

        def add(name: str, weight: float, term: Callable[[], torch.Tensor]) -> None:
            # ``term`` is only evaluated for a positive weight: switched-off terms cost nothing.
            if weight > 0:
                terms[name] = terms.get(name, 0.0) + weight * term()

        def violation_sdf():
            pts = self.random_points(256)
            return None if pts is None else self.model.sdf_net.sdf(pts)

        rays_per_view = max(1, sc.rays_per_batch // sc.images_per_batch)
        sem_opacities, sem_labels = [], []
        for v_i in range(sc.images_per_batch):
            view = self.views[self.sampler.draw(self.rng)]
            if sc.label_comprehensive:
                pix = label_comprehensive_pixels(view.label_index, rays_per_view,
                                                 per_label_share=sc.per_label_share, generator=self.generator)
            else:
                pix = uniform_pixels(int(view.label_index.order.shape[0]), rays_per_view, self.generator)
            pixels, origins, dirs, depth_t = self.rays(view, pix)
            out = self.model.render(origins, dirs, depth_t=depth_t, depth_everywhere=view.depth_complete,
                                    train=True,
                                    eikonal_points=self.random_points(lcfg.eikonal_points if v_i == 0 else 0),
                                    want_normals=False, generator=self.generator)
            # the rays' machine classes and labelled object rays, gathered once for the
            # class votes, the channel-class counts, the label agreement and L_cross_view
            semantic = None if view.semantic is None else view.semantic[pixels]
            labelled = view.valid[pixels] & (view.instance[pixels] > 0)
            if self.class_votes is not None and depth_t is not None and semantic is not None:
                self.class_votes.add(origins + dirs * (depth_t[:, None] * self.box.scale),
                                     torch.where(labelled & (depth_t > 0), semantic, 0))
            opacity_s = objective.add_view_losses(add, cfg, view, pixels, depth_t, out, scale_m=self.box.scale,
                                                  past=self.past, violation_sdf=violation_sdf)
            if cfg.trainer.mode == "instance":
                if semantic is not None:
                    self.class_counts.update(opacity_s.detach(), semantic, labelled)
                self.class_counts.update_agreement(opacity_s.detach(), view.label_index.group[pixels],
                                                   view.label_index.num_labels, labelled)
            else:
                self.class_counts.update_agreement(opacity_s.detach(), semantic, 0, semantic > 0)
            if lcfg.lambda_cross_view > 0 and semantic is not None:
                sem_opacities.append(opacity_s)      # the softmax the view's losses took
                sem_labels.append(semantic)
        if lcfg.lambda_cross_view > 0 and sem_opacities:
            extra_o, extra_l = objective.cross_view_rays(cfg, self.views, self.box, self.model.render,
                                                         self.rng, self.generator)
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

    def past(self, fraction: float) -> bool:
        """Whether training has reached ``fraction`` of ``trainer.iterations`` (a late
        term's start). The iteration count is used, offline and online alike: the
        online learning-rate schedule's rewinds do not switch late terms off again."""
        return self.iteration >= fraction * self.config.trainer.iterations

    def channel_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """(class id per channel, confidence per channel) (:class:`.ChannelClassCounts`)."""
        return self.class_counts.classes()

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
                        self.surface_heights(), votes, self.length_scale)

    def surface_heights(self) -> tuple[float, float] | None:
        """(floor z, ceiling z) of the views' depth points (:func:`.views.surface_heights`);
        None without depth. Kept in checkpoints for a trainer restored without its views.
        Cached until the views change (every snapshot asks: the node takes one per
        extraction)."""
        if not self.views:
            return self._saved_heights
        key = [id(v) for v in self.views]
        if self._heights_views != key:
            self._heights, self._heights_views = surface_heights(self.views, self.box), key
        return self._heights

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
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
            "channel_class_counts": self.class_counts.state(),
            "class_votes": None if self.class_votes is None else self.class_votes.state_dict(),
            "online": self.online,
            "length_scale": self.length_scale,
            "seeds": self.seeds.state(),
            # online: the key-frame buffer, its views named by uid (files beside the checkpoint)
            "keyframes": self.buffer.state(key=lambda view: view.uid) if self.online else None,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (:mod:`.checkpoint`); an online trainer's key
        frames go into ``keyframes/`` beside it."""
        return write_checkpoint(path, self.state_dict(), self.views if self.online else ())

    def load_state(self, state: dict) -> None:
        """Restore a state dict (the views are the caller's: :meth:`load_checkpoint`)."""
        if state.get("format") != CHECKPOINT_FORMAT:
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
        self.class_counts.load(state["channel_class_counts"])
        if self.class_votes is not None and state.get("class_votes") is not None:
            self.class_votes = ClassVotes.from_state_dict(state["class_votes"])
        self.online = bool(state.get("online", False))
        self.seeds.load(state.get("seeds", [self.iteration > 0, 0]))

    @classmethod
    def load_checkpoint(cls, path: str | Path, *, dataset=None, device=None,
                        state: dict | None = None) -> "Trainer":
        """Rebuild a trainer from a checkpoint (``state``: its already-read state dict).
        Offline checkpoints re-read their views from ``dataset`` (the same frames they
        were trained on); online ones read their key frames from beside the checkpoint.
        A field the checkpoint predates takes its ``Config()`` default (new fields
        default to the old behaviour)."""
        path = Path(path)
        state = read_checkpoint(path) if state is None else state
        tree = state["config"]
        if "length_scale" not in tree.get("data", {}):
            # saved before scene lengths were resolved: its lengths were used as written
            tree = {**tree, "data": {**tree.get("data", {}), "length_scale": 1.0}}
        config = Config.from_dict(tree, partial=True)
        classes = ClassTable.from_list(state["classes"])
        trainer = cls(config, SceneBox.from_state_dict(state["box"]), classes=classes, device=device,
                      length_scale=state.get("length_scale", 1.0))
        if state.get("keyframes"):
            views = read_keyframes(path.parent / KEYFRAME_DIR, keyframe_uids(state), config.trainer.mode,
                                   trainer.device)
            trainer.buffer.load(state["keyframes"], views)
            trainer.views = trainer.buffer.items()
            trainer.sampler.update(trainer.buffer.label_counts())
        elif dataset is not None:
            trainer._load_views(dataset)
        trainer.load_state(state)
        return trainer
