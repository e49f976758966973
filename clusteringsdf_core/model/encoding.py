"""Input encodings of points in normalised scene coordinates ([-1, 1]^3 at first).

- :class:`DenseGridEncoding`: multi-resolution dense feature volumes read with
  trilinear interpolation (:func:`trilinear`); the fast choice on CPU for room-sized scenes.
- :class:`TriPlaneEncoding`: multi-resolution axis-aligned feature planes (2D
  ``grid_sample``), few parameters.
- :class:`HashGridEncoding`: the multi-resolution hash grid of Instant-NGP (the
  authors' encoding) in plain PyTorch; twice differentiable, meant for GPUs.
- :class:`PositionalEncoding`: sin/cos frequencies, concatenated to any of them.

All map ``x: (N, 3)`` to ``(N, out_dim)``.

A map that grows past the cube (an online map, :meth:`SceneBox.grown`) keeps its
normalisation: the dense grids and planes get whole cells added on each side (their
old cells stay where they were, so a grown encoding reads the same features at every
old point), the hash grid hashes the cells outside its dense range. ``reach`` is the
largest |coordinate| per axis (x, y, z) the encoding must cover (1 = the cube).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PositionalEncoding", "DenseGridEncoding", "TriPlaneEncoding", "HashGridEncoding",
           "level_resolutions", "padding_cells", "make_encoding", "trilinear"]


def level_resolutions(levels: int, base: int, finest: int) -> list[int]:
    """Geometric progression of resolutions from ``base`` to ``finest``."""
    if levels == 1:
        return [base]
    growth = math.exp((math.log(finest) - math.log(base)) / (levels - 1))
    return [int(round(base * growth ** i)) for i in range(levels)]


def padding_cells(resolution: int, reach: float) -> int:
    """Cells to add on each side of a ``resolution``-node axis spanning [-1, 1] so that it
    spans at least [-reach, reach] with the same node spacing (0 for reach <= 1)."""
    if resolution < 2 or reach <= 1.0:
        return 0
    return int(math.ceil((reach - 1.0) * (resolution - 1) / 2.0 - 1e-6))


def _padded_extent(resolution: int, pad: int) -> float:
    """Half extent of an axis of ``resolution + 2 pad`` nodes spaced as ``resolution``
    nodes over [-1, 1]."""
    return (resolution + 2 * pad - 1) / max(resolution - 1, 1)


def _reach(reach) -> tuple[float, float, float]:
    r = (1.0, 1.0, 1.0) if reach is None else tuple(float(v) for v in reach)
    if len(r) != 3:
        raise ValueError(f"reach must have 3 values (x, y, z), got {r}")
    return r


class PositionalEncoding(nn.Module):
    """x -> [x, sin(2^k pi x), cos(2^k pi x)] for k < frequencies."""

    def __init__(self, frequencies: int, include_input: bool = True):
        super().__init__()
        self.frequencies = frequencies
        self.include_input = include_input
        self.register_buffer("scales", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        self.out_dim = 3 * (int(include_input) + 2 * frequencies)

    def forward(self, x: Tensor) -> Tensor:
        parts = [x] if self.include_input else []
        if self.frequencies:
            xs = (x[..., None, :] * self.scales[:, None]).flatten(-2)
            parts += [torch.sin(xs), torch.cos(xs)]
        return torch.cat(parts, dim=-1)


def trilinear(volume: Tensor, x: Tensor, nodes: Tensor, corner_offsets: Tensor) -> Tensor:
    """``F.grid_sample(volume, x, mode="bilinear", padding_mode="border",
    align_corners=True)`` for one (1, F, z, y, x) volume and points ``x`` (N, 3) in
    [-1, 1] (outside: clamped), as (F, N): the 8 corner features gathered with
    ``index_select`` and weighted. Same values, 2.5-4x faster forward + backward on a
    CPU (PyTorch's 3D sampler runs on one thread when the batch is 1, and its backward
    is scalar), and differentiable twice and in forward mode (the 3D sampler's double
    backward is not implemented). ``nodes``: nodes per axis (x, y, z) as floats;
    ``corner_offsets``: the flat offsets of a cell's 8 corners (:class:`DenseGridEncoding`)."""
    p = (x.clamp(-1.0, 1.0) + 1.0) * (0.5 * (nodes - 1.0))          # node units, (N, 3)
    p0 = p.detach().floor().clamp(max=nodes - 2.0)                  # x = 1: the last cell
    f = p - p0
    i0 = p0.long()
    width, height = volume.shape[4], volume.shape[3]
    base = (i0[:, 2] * height + i0[:, 1]) * width + i0[:, 0]
    idx = (base[:, None] + corner_offsets).reshape(-1)                # (N * 8,)
    fx, fy, fz = f.unbind(-1)
    wx = torch.stack([1.0 - fx, fx], -1)
    wy = torch.stack([1.0 - fy, fy], -1)
    wz = torch.stack([1.0 - fz, fz], -1)
    w = (wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]).reshape(-1, 8)   # (N, 8)
    features = volume.shape[1]
    corners = volume.reshape(features, -1).index_select(1, idx).view(features, -1, 8)
    return (corners * w).sum(-1)


class DenseGridEncoding(nn.Module):
    """Dense feature volumes at several resolutions, summed over nothing: concatenated.

    Level l has ``r_l`` nodes per unit cube side, plus :func:`padding_cells` per side of
    each axis the map grew past the cube along; its volume is (1, F, z, y, x)."""

    def __init__(self, levels: int, features: int, base_resolution: int, max_resolution: int,
                 init_std: float = 1e-4, reach=None):
        super().__init__()
        self.resolutions = level_resolutions(levels, base_resolution, max_resolution)
        reach = _reach(reach)
        pads = [[padding_cells(r, a) for a in reach] for r in self.resolutions]
        self.grids = nn.ParameterList(
            nn.Parameter(torch.randn(1, features, r + 2 * pz, r + 2 * py, r + 2 * px) * init_std)
            for r, (px, py, pz) in zip(self.resolutions, pads))
        extents = [[_padded_extent(r, p) for p in pad] for r, pad in zip(self.resolutions, pads)]
        self.register_buffer("extents", torch.tensor(extents, dtype=torch.float32), persistent=False)
        self.padded = any(p for pad in pads for p in pad)
        self.out_dim = levels * features

        # per level: nodes per axis (x, y, z) and the flat offsets of a cell's 8 corners
        shapes = [g.shape[2:] for g in self.grids]                       # (z, y, x)
        self.register_buffer("nodes", torch.tensor([[w, h, d] for d, h, w in shapes], dtype=torch.float32),
                             persistent=False)
        self.register_buffer("corner_offsets", torch.tensor(
            [[(dz * h + dy) * w + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)] for _, h, w in shapes]),
            persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        feats = [trilinear(grid, x / self.extents[i] if self.padded else x, self.nodes[i], self.corner_offsets[i])
                 for i, grid in enumerate(self.grids)]
        return torch.cat(feats, dim=0).t()


class TriPlaneEncoding(nn.Module):
    """Three axis-aligned feature planes per resolution; plane features are summed.

    The three planes of a level share one square tensor, so a map grown past the cube
    pads every plane side by the cells its farthest axis needs."""

    def __init__(self, levels: int, features: int, base_resolution: int, max_resolution: int,
                 init_std: float = 1e-4, reach=None):
        super().__init__()
        self.resolutions = level_resolutions(levels, base_resolution, max_resolution)
        far = max(_reach(reach))
        pads = [padding_cells(r, far) for r in self.resolutions]
        self.planes = nn.ParameterList(
            nn.Parameter(torch.randn(3, features, r + 2 * p, r + 2 * p) * init_std)
            for r, p in zip(self.resolutions, pads))
        self.register_buffer("extents", torch.tensor([_padded_extent(r, p) for r, p in zip(self.resolutions, pads)],
                                                     dtype=torch.float32), persistent=False)
        self.padded = any(pads)
        self.out_dim = levels * features

    def forward(self, x: Tensor) -> Tensor:
        coords = torch.stack([x[:, [0, 1]], x[:, [0, 2]], x[:, [1, 2]]]).unsqueeze(1)  # (3, 1, N, 2)
        feats = [F.grid_sample(p, coords / self.extents[i] if self.padded else coords, mode="bilinear",
                               padding_mode="border", align_corners=True).sum(0).squeeze(1)
                 for i, p in enumerate(self.planes)]
        return torch.cat(feats, dim=0).t()


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding (Mueller et al. 2022) with trilinear interpolation.

    Levels whose dense grid fits in the table are indexed densely (no collisions) over
    the cube. Points are clamped to the cube unless ``reach`` goes past it (a grown map):
    then the cells outside the dense range are hashed into the same table, so the
    encoding needs no resizing. Plain PyTorch: differentiable twice (analytic SDF
    gradients work), but gathers are slow on CPU; prefer :class:`DenseGridEncoding` there.
    """

    PRIMES = (1, 2654435761, 805459861)

    def __init__(self, levels: int, features: int, base_resolution: int, max_resolution: int,
                 log2_table_size: int, init_std: float = 1e-4, reach=None):
        super().__init__()
        self.resolutions = level_resolutions(levels, base_resolution, max_resolution)
        self.table_size = 2 ** log2_table_size
        self.unbounded = max(_reach(reach)) > 1.0
        sizes = [min(self.table_size, (r + 1) ** 3) for r in self.resolutions]
        self.tables = nn.ParameterList(nn.Parameter(torch.randn(s, features) * init_std) for s in sizes)
        corners = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
        self.register_buffer("corners", corners, persistent=False)
        self.out_dim = levels * features

    def _index(self, cell: Tensor, res: int, size: int) -> Tensor:
        dense_level = (res + 1) ** 3 <= size
        if dense_level:
            dense = (cell[..., 0] * (res + 1) + cell[..., 1]) * (res + 1) + cell[..., 2]
            if not self.unbounded:           # clamped points: every cell is in the dense range
                return dense
        h = cell[..., 0] * self.PRIMES[0]
        h = torch.bitwise_xor(h, cell[..., 1] * self.PRIMES[1])
        h = torch.bitwise_xor(h, cell[..., 2] * self.PRIMES[2])
        hashed = h % size
        if not dense_level:
            return hashed
        inside = ((cell >= 0) & (cell <= res)).all(dim=-1)
        return torch.where(inside, dense, hashed)

    def forward(self, x: Tensor) -> Tensor:
        unit = ((x if self.unbounded else x.clamp(-1, 1)) + 1) / 2
        feats = []
        for res, table in zip(self.resolutions, self.tables):
            p = unit * res
            p0 = p.detach().floor()
            if not self.unbounded:           # x = 1: the last cell, not one past it
                p0 = p0.clamp(max=res - 1)
            frac = p - p0                                           # (N, 3), differentiable
            cells = p0.long()[:, None, :] + self.corners            # (N, 8, 3)
            idx = self._index(cells, res, table.shape[0])           # (N, 8)
            w = torch.where(self.corners.bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
            feats.append((table[idx] * w[..., None]).sum(1))
        return torch.cat(feats, dim=-1)


def make_encoding(cfg, reach=None) -> nn.Module | None:
    """The grid encoding named by a :class:`~clusteringsdf_core.config.ModelConfig`,
    covering |x_a| <= ``reach[a]`` (default: the unit cube)."""
    args = (cfg.grid_levels, cfg.grid_features_per_level, cfg.grid_base_resolution, cfg.grid_max_resolution)
    if cfg.encoding == "densegrid":
        return DenseGridEncoding(*args, reach=reach)
    if cfg.encoding == "triplane":
        return TriPlaneEncoding(*args, reach=reach)
    if cfg.encoding == "hashgrid":
        return HashGridEncoding(*args, cfg.grid_log2_hashmap_size, reach=reach)
    if cfg.encoding == "none":
        return None
    raise ValueError(f"unknown encoding {cfg.encoding!r}")
