"""The object-compositional SDF field, its colour network and the Laplace density.

Geometry lives in normalised scene coordinates: :class:`SceneBox` maps the scene
bounds (metres, world frame) into the cube [-1, 1]^3 keeping the aspect ratio, so
SDF values are in normalised units; multiply by ``SceneBox.scale`` for metres.

SDF channel k is ``prior_k(x) + mlp_k(x)``: the prior is the geometric
initialisation (channel 0 an inverted box around the scene: the room is
"inside-out"; object channels small spheres at random places), and the MLP's SDF
outputs start near zero, so training starts from exactly that shape.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from clusteringsdf_core.config import ModelConfig
from clusteringsdf_core.model.encoding import PositionalEncoding, make_encoding

__all__ = ["SceneBox", "ObjectSDFNetwork", "ColorNetwork", "LaplaceDensity", "activation"]


class SceneBox:
    """World (metres) <-> normalised coordinates: ``x_n = (x_w - centre) / scale``.

    The normalisation frame (centre, scale) is fixed when the box is made; the
    represented volume ``bounds_m`` may grow afterwards (:meth:`grown`, an online map
    whose frames show new space), so in normalised units it spans ``lo``..``hi``, which
    may leave [-1, 1]. Distances and SDF values keep their meaning: ``scale`` never
    changes. ``history_m`` lists the volumes it grew from, oldest first (the room prior
    of :class:`ObjectSDFNetwork` keeps each one's shape inside it).
    """

    def __init__(self, bounds_m: np.ndarray, padding_m: float = 0.1, frame_bounds_m: np.ndarray | None = None,
                 history_m: list | None = None):
        bounds = np.asarray(bounds_m, dtype=np.float64).reshape(2, 3)
        if not np.all(bounds[1] > bounds[0]):
            raise ValueError(f"scene bounds must have positive extent, got {bounds.tolist()}")
        self.bounds_m = bounds + np.array([[-padding_m], [padding_m]])
        frame = self.bounds_m if frame_bounds_m is None else np.asarray(frame_bounds_m, np.float64).reshape(2, 3)
        self.frame_bounds_m = frame
        self.history_m = [np.asarray(b, np.float64).reshape(2, 3) for b in (history_m or [])]
        self.centre = frame.mean(0)
        self.scale = float((frame[1] - frame[0]).max() / 2.0)

    @property
    def lo(self) -> np.ndarray:
        """(3,) lower corner of the represented volume, normalised."""
        return (self.bounds_m[0] - self.centre) / self.scale

    @property
    def hi(self) -> np.ndarray:
        """(3,) upper corner of the represented volume, normalised."""
        return (self.bounds_m[1] - self.centre) / self.scale

    @property
    def reach(self) -> np.ndarray:
        """(3,) largest |normalised coordinate| of the volume per axis (<= 1 until it grows)."""
        return np.maximum(np.abs(self.lo), np.abs(self.hi))

    def grown(self, bounds_m: np.ndarray) -> "SceneBox":
        """A box over the union of this volume and ``bounds_m`` (metres, no padding added),
        in this box's normalisation frame."""
        b = np.asarray(bounds_m, np.float64).reshape(2, 3)
        union = np.stack([np.minimum(self.bounds_m[0], b[0]), np.maximum(self.bounds_m[1], b[1])])
        return SceneBox(union, padding_m=0.0, frame_bounds_m=self.frame_bounds_m,
                        history_m=[*self.history_m, self.bounds_m])

    def volumes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(lo, hi) normalised of every volume the box has had, oldest first, the current last."""
        return [((b[0] - self.centre) / self.scale, (b[1] - self.centre) / self.scale)
                for b in [*self.history_m, self.bounds_m]]

    def to_normalised(self, x_world):
        return (x_world - torch.as_tensor(self.centre, dtype=x_world.dtype, device=x_world.device)) / self.scale \
            if isinstance(x_world, Tensor) else (np.asarray(x_world) - self.centre) / self.scale

    def to_world(self, x_norm):
        return x_norm * self.scale + torch.as_tensor(self.centre, dtype=x_norm.dtype, device=x_norm.device) \
            if isinstance(x_norm, Tensor) else np.asarray(x_norm) * self.scale + self.centre

    def state_dict(self) -> dict:
        return {"bounds_m": self.bounds_m.tolist(), "frame_bounds_m": self.frame_bounds_m.tolist(),
                "history_m": [b.tolist() for b in self.history_m]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "SceneBox":
        return cls(np.array(state["bounds_m"]), padding_m=0.0,
                   frame_bounds_m=None if state.get("frame_bounds_m") is None else np.array(state["frame_bounds_m"]),
                   history_m=state.get("history_m"))


def activation(name: str, softplus_beta: float = 100.0) -> nn.Module:
    if name == "softplus":
        return nn.Softplus(beta=softplus_beta)
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


def _mlp(in_dim: int, hidden: list[int], out_dim: int, act: nn.Module, weight_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b)
        layers += [nn.utils.parametrizations.weight_norm(lin) if weight_norm else lin, act]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def _distances(x: Tensor, centres: Tensor) -> Tensor:
    """(N, c) Euclidean distances of points (N, 3) to centres (c, 3), from
    ``|x|^2 - 2 x.c + |c|^2`` (what ``torch.cdist`` computes for many points), written out
    because ``cdist`` has no forward-mode derivative (the per-channel SDF gradients are
    taken in forward mode, see ``ClusteringSDFModel.sdf_gradient``)."""
    sq = (x * x).sum(-1, keepdim=True) - 2.0 * x @ centres.T + (centres * centres).sum(-1)
    return torch.sqrt(sq.clamp(min=1e-12))


class ObjectSDFNetwork(nn.Module):
    """x (N, 3) normalised -> SDF of every channel (N, c) and a feature (N, F)."""

    def __init__(self, cfg: ModelConfig, box: SceneBox, seed: int = 0):
        super().__init__()
        self.num_channels = cfg.num_channels
        self.feature_dim = cfg.feature_dim
        self.encoding = make_encoding(cfg, reach=box.reach)
        self.pe = PositionalEncoding(cfg.positional_frequencies)
        in_dim = self.pe.out_dim + (self.encoding.out_dim if self.encoding is not None else 0)
        self.shared = cfg.sdf_parametrization == "shared_geometry"
        self.num_sdf_outputs = cfg.num_channels + (1 if self.shared else 0)
        self.mlp = _mlp(in_dim, cfg.sdf_hidden, self.num_sdf_outputs + cfg.feature_dim,
                        activation(cfg.activation, cfg.softplus_beta), cfg.weight_norm)
        last = self.mlp[-1]
        with torch.no_grad():  # SDF outputs start near 0: the prior is the initial shape
            last.weight[: self.num_sdf_outputs].mul_(1e-3)
            last.bias[: self.num_sdf_outputs].zero_()
        gap = torch.full((cfg.num_channels,), cfg.init_channel_gap)
        gap[0] = 0.0
        self.register_buffer("channel_gap", gap)
        self.geometric_init = cfg.geometric_init
        gen = torch.Generator().manual_seed(seed)
        volumes = torch.as_tensor(np.array(box.volumes()), dtype=torch.float32)     # (V, 2, 3)
        centre, half = volumes.mean(dim=1), (volumes[:, 1] - volumes[:, 0]) / 2       # (V, 3)
        centres = centre[0] + (torch.rand(cfg.num_channels, 3, generator=gen) * 2 - 1) * half[0] * 0.6
        self.register_buffer("sphere_centres", centres)
        # The room prior's boxes: the volumes the map has had (from the box, not saved).
        self.register_buffer("room_centres", centre, persistent=False)
        self.register_buffer("room_halves", half * cfg.init_background_radius, persistent=False)
        self.object_radius = cfg.init_object_radius
        self.offset_slope = cfg.init_offset_slope

    def prior(self, x: Tensor) -> Tensor:
        """(N, c) initial SDFs: channel 0 an inverted box, others spheres.

        A grown map's room is ``min(box_v(x), |room_{v-1}(x)|)`` over its volumes: inside
        an older volume exactly its old value (box_v >= room_{v-1} >= 0 there), so what was
        learned stays where it was; free space in the new part, zero on the old walls
        (the surface the old map had there, which the new frames' rays then clear)."""
        spheres = _distances(x, self.sphere_centres) - self.object_radius          # (N, c)
        room = None
        for centre, half in zip(self.room_centres, self.room_halves):
            box = (half - (x - centre).abs()).min(dim=-1).values                    # (N,)
            room = box if room is None else torch.minimum(box, room.abs())
        return torch.cat([room[:, None], spheres[:, 1:]], dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sdf, feature, _ = self.forward_parts(x)
        return sdf, feature

    def forward_parts(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """(sdf (N, c), feature (N, F), (scene s (N,), offsets (N, c)) or None).

        The third item is the shared-geometry decomposition d_k = s + offset_k (None for
        the direct parametrisation)."""
        h = self.pe(x)
        if self.encoding is not None:
            h = torch.cat([h, self.encoding(x)], dim=-1)
        out = self.mlp(h)
        feature = out[:, self.num_sdf_outputs:]
        if self.shared:
            # d_k = s + g_k - min_j g_j: s is the scene SDF, g the channel offsets.
            scene = out[:, 0]
            if self.geometric_init:
                scene = scene + self.prior(x)[:, 0]
            offsets = out[:, 1: self.num_sdf_outputs] + self.channel_gap
            if self.geometric_init and self.offset_slope > 0:
                ramp = _distances(x, self.sphere_centres) * self.offset_slope
                offsets = offsets + torch.cat([torch.zeros_like(ramp[:, :1]), ramp[:, 1:]], dim=1)
            offsets = offsets - offsets.min(dim=-1, keepdim=True).values
            return scene[:, None] + offsets, feature, (scene, offsets)
        sdf = out[:, : self.num_channels]
        if self.geometric_init:
            sdf = sdf + self.prior(x)
        return sdf, feature, None

    def sdf(self, x: Tensor) -> Tensor:
        return self.forward(x)[0]

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.encoding.parameters()) if self.encoding is not None else []

    def network_parameters(self) -> list[nn.Parameter]:
        return list(self.mlp.parameters())


class ColorNetwork(nn.Module):
    """Colour at a point from its position, view direction, (normal) and geometry feature."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.uses_normal = cfg.color_uses_normal
        in_dim = 3 + 3 + (3 if self.uses_normal else 0) + cfg.feature_dim
        self.mlp = _mlp(in_dim, cfg.color_hidden, 3, activation(cfg.activation, cfg.softplus_beta),
                        cfg.weight_norm)

    def forward(self, x: Tensor, view_dirs: Tensor, feature: Tensor, normals: Tensor | None = None) -> Tensor:
        parts = [x, view_dirs]
        if self.uses_normal:
            if normals is None:
                raise ValueError("this colour network is conditioned on normals")
            parts.append(normals)
        parts.append(feature)
        return torch.sigmoid(self.mlp(torch.cat(parts, dim=-1)))


class LaplaceDensity(nn.Module):
    """VolSDF density: sigma(s) = (1/beta) * Psi_beta(-s), Psi the Laplace CDF; beta learnable."""

    def __init__(self, beta_init: float, beta_min: float):
        super().__init__()
        self.beta_min = beta_min
        self.beta_param = nn.Parameter(torch.tensor(beta_init - beta_min))

    @property
    def beta(self) -> Tensor:
        return self.beta_param.abs() + self.beta_min

    def forward(self, sdf: Tensor, *, detach_beta: bool = False, beta_floor: float = 0.0) -> Tensor:
        beta = self.beta.detach() if detach_beta else self.beta
        if beta_floor > 0:
            beta = beta.clamp(min=beta_floor)
        # Psi(-s): 0.5 exp(-s/b) for s >= 0, 1 - 0.5 exp(s/b) for s < 0.
        e = 0.5 * torch.exp(-sdf.abs() / beta)
        return torch.where(sdf >= 0, e, 1.0 - e) / beta


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

