"""Channel seeds: object channels' initial sphere centres put on observed objects.

With the geometric initialisation every object channel starts as a small sphere
(``model.init_object_radius_m``). Where its centre sits decides which object the
channel can win: a random centre in free space leaves objects to share whichever
channel happens to be near. :class:`ChannelSeeds` places at most the share
``model.init_seeds_observed`` of the object channels on observed objects, by
farthest-point sampling over one point per labelled 2D segment
(:func:`foreground_points`), ``model.init_seed_spacing_m`` apart; the other channels
keep their random centres. Offline it runs once, at the first step.

Online, later frames add centres for segments farther than the spacing from every
centre placed. ``model.init_late_seeds`` says how far that goes: ``share`` (default) while
the share lasts; ``spacing`` on any object channel not placed yet, the share
limiting the first placement only; ``unowned`` as ``spacing``, but only for segments
whose point the background channel owns (smallest SDF there), so a large object that
a channel already holds gets no second centre when it is seen from a new side.

Why not the share alone: the first frames of a stream see a few objects, whose segments
(several per large object, seen from several sides) use it up. On bench scene seed 0
(label seed 0, cpu preset) 9 of the 12 are placed at the first step (frame 5) and the
last at frame 18, while two chairs and the lamp first show at frames 16, 18 and 19.
With ``spacing``, all 23 object channels are placed by frame 51. Among the free
channels a late segment takes the one that wins the fewest labelled rays (its label
usage, decayed), so a random channel that already holds an object is moved last. On
the bench's online runs ``spacing`` did not beat ``share`` (docs/ONLINE.md), so
``share`` stays the default.
"""

from __future__ import annotations

from typing import Callable

import torch

from clusteringsdf_core.config import ModelConfig
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.training.views import TrainingView, view_rays

__all__ = ["ChannelSeeds", "foreground_points"]


def foreground_points(views: list[TrainingView], box: SceneBox, generator: torch.Generator,
                      max_points_per_view: int = 2000) -> torch.Tensor | None:
    """One point per labelled 2D segment of ``views`` (normalised coordinates): the
    segment pixel whose back-projected depth is nearest the segment's coordinate-wise
    median, i.e. a point on the object the segmenter saw. None when no view has a
    labelled pixel with depth."""
    points = []
    for view in views:
        if view.depth_m is None:
            continue
        fg = torch.nonzero((view.instance > 0) & view.valid & (view.depth_m > 0))[:, 0]
        if fg.numel() == 0:
            continue
        if fg.numel() > max_points_per_view:
            fg = fg[torch.randperm(fg.numel(), generator=generator, device=fg.device)[:max_points_per_view]]
        _, origins, dirs, depth_t = view_rays(view, fg, box)
        xyz = box.to_normalised(origins + dirs * depth_t[:, None] * box.scale)
        labels = view.instance[fg]
        for label in torch.unique(labels):
            seg = xyz[labels == label]
            median = seg.median(dim=0).values
            points.append(seg[(seg - median).norm(dim=-1).argmin()])
    return torch.stack(points) if points else None


class ChannelSeeds:
    """Which object channels' centres have been placed on observed objects.

    ``placed``: whether the first placement ran; ``channels``: the object channels
    (channel 0 is the background) with a centre on an observed object, in the order
    they were placed; ``count`` how many.
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self.placed = False
        self.channels: list[int] = []

    @property
    def count(self) -> int:
        return len(self.channels)

    @property
    def budget(self) -> int:
        """Object channels the first placement may put on observed objects."""
        mc = self.config
        return int(round(mc.init_seeds_observed * (mc.num_channels - 1)))

    @property
    def late_budget(self) -> int:
        """Object channels that may be placed in all, once the first placement ran: the
        share with ``init_late_seeds: share``, else every one when ``init_seeds_observed``
        is positive (module docstring)."""
        if self.config.init_late_seeds == "share":
            return self.budget
        return self.config.num_channels - 1 if self.budget > 0 else 0

    @property
    def current_budget(self) -> int:
        """The budget of the next placement: :attr:`budget` for the first (nothing
        placed yet), :attr:`late_budget` after it."""
        return self.late_budget if self.count else self.budget

    @property
    def full(self) -> bool:
        return self.count >= self.current_budget

    def extend(self, centres: torch.Tensor, pts: torch.Tensor | None, scale: float,
               generator: torch.Generator, usage: torch.Tensor | None = None,
               owner: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
        """Farthest-point sampling over ``pts`` (normalised coordinates) that writes new
        channel centres into ``centres`` (the SDF network's sphere centres, row k for
        channel k) while a point lies more than ``model.init_seed_spacing_m`` (``scale``:
        metres per normalised unit) from every placed centre and the budget is not used
        up. The first centre is a random point of ``pts``. The first placement fills
        channels 1, 2, ...; a later one (``usage``: (c,) labelled rays each channel
        wins) the free channel of least usage, lowest index first (``init_late_seeds:
        share``: the next one). With ``init_late_seeds: unowned``, a later placement
        only takes points whose ``owner`` (the channel of smallest SDF there, for (N, 3)
        points) is the background. Returns how many it added."""
        late = bool(self.count)
        mode = self.config.init_late_seeds
        budget = self.current_budget
        if pts is None or pts.shape[0] == 0 or self.count >= budget:
            return 0
        if late and mode == "unowned" and owner is not None:
            pts = pts[owner(pts) == 0]
            if pts.shape[0] == 0:
                return 0
        spacing = self.config.init_seed_spacing_m / scale
        if self.count:
            dist = torch.cdist(pts, centres[self.channels].to(pts)).min(dim=1).values
        else:
            dist = torch.full((pts.shape[0],), float("inf"), device=pts.device)
        added = 0
        while self.count < budget:
            i = int(dist.argmax()) if self.count else int(torch.randint(
                pts.shape[0], (1,), generator=generator, device=generator.device))
            if float(dist[i]) <= spacing:
                break
            k = self._next_channel(usage if late and mode != "share" else None)
            with torch.no_grad():
                centres[k] = pts[i].to(centres)
            self.channels.append(k)
            added += 1
            dist = torch.minimum(dist, (pts - pts[i]).norm(dim=-1))
        return added

    def _next_channel(self, usage: torch.Tensor | None) -> int:
        placed = set(self.channels)
        free = [k for k in range(1, self.config.num_channels) if k not in placed]
        if usage is None:
            return free[0]
        use = usage.detach().cpu().tolist()
        return min(free, key=lambda k: (use[k], k))

    def state(self) -> list:
        return [self.placed, self.count, list(self.channels)]

    def load(self, state: list) -> None:
        """Restore :meth:`state`; a checkpoint from before the channel list (``[placed,
        count]``) had channels 1..count placed."""
        self.placed = bool(state[0])
        self.channels = [int(k) for k in state[2]] if len(state) > 2 else list(range(1, int(state[1]) + 1))
