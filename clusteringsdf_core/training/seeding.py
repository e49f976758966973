"""Channel seeds: object channels' initial sphere centres put on observed objects.

With the geometric initialisation every object channel starts as a small sphere
(``model.init_object_radius_m``). Where its centre sits decides which object the
channel can win: a random centre in free space leaves objects to share whichever
channel happens to be near. :class:`ChannelSeeds` places at most the share
``model.init_seeds_observed`` of the object channels on observed objects, by
farthest-point sampling over one point per labelled 2D segment
(:func:`foreground_points`), ``model.init_seed_spacing_m`` apart; the other channels
keep their random centres. Offline it runs once, at the first step; online, later
frames add centres for segments farther than the spacing from every centre placed.
"""

from __future__ import annotations

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

    ``placed``: whether the first placement ran; ``count``: how many channels
    (1..count, channel 0 is the background) have a centre on an observed object.
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self.placed = False
        self.count = 0

    @property
    def budget(self) -> int:
        """Object channels whose centre may be placed on observed objects."""
        mc = self.config
        return int(round(mc.init_seeds_observed * (mc.num_channels - 1)))

    @property
    def full(self) -> bool:
        return self.count >= self.budget

    def extend(self, centres: torch.Tensor, pts: torch.Tensor | None, scale: float,
               generator: torch.Generator) -> int:
        """Farthest-point sampling over ``pts`` (normalised coordinates) that writes new
        channel centres into ``centres`` (the SDF network's sphere centres, row k for
        channel k) while a point lies more than ``model.init_seed_spacing_m`` (``scale``:
        metres per normalised unit) from every placed centre and the budget is not used
        up. The first centre is a random point of ``pts``. Returns how many it added."""
        budget = self.budget
        if pts is None or pts.shape[0] == 0 or self.count >= budget:
            return 0
        spacing = self.config.init_seed_spacing_m / scale
        if self.count:
            dist = torch.cdist(pts, centres[1:1 + self.count].to(pts)).min(dim=1).values
        else:
            dist = torch.full((pts.shape[0],), float("inf"), device=pts.device)
        added = 0
        while self.count < budget:
            i = int(dist.argmax()) if self.count else int(torch.randint(
                pts.shape[0], (1,), generator=generator, device=generator.device))
            if float(dist[i]) <= spacing:
                break
            with torch.no_grad():
                centres[1 + self.count] = pts[i].to(centres)
            self.count += 1
            added += 1
            dist = torch.minimum(dist, (pts - pts[i]).norm(dim=-1))
        return added

    def state(self) -> list:
        return [self.placed, self.count]

    def load(self, state: list) -> None:
        self.placed, self.count = bool(state[0]), int(state[1])
