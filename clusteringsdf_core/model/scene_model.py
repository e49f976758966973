"""The ClusteringSDF model: object-compositional SDF + colour + density, and ray rendering.

``ClusteringSDFModel.render`` turns rays into what the losses need:

- ``rgb`` (R, 3), ``depth_t`` (R,) expected distance along the ray, ``acc`` (R,);
- ``opacity`` (R, c): the occlusion-aware object opacity of every channel (paper
  Eq. 1, ObjectSDF++): ``O_k(r) = sum_i T(i) alpha_k(i)`` where ``alpha_k`` uses
  channel k's SDF and ``T`` the transmittance of the scene SDF (min over channels);
- ``grad`` (M, c, 3): SDF gradients of every channel at the eikonal points;
- ``normal`` (R, 3) expected surface normal (world frame), when asked for.

Distances are in normalised scene units (see :class:`SceneBox`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

from clusteringsdf_core.config import Config
from clusteringsdf_core.model.fields import ColorNetwork, LaplaceDensity, ObjectSDFNetwork, SceneBox
from clusteringsdf_core.render.rays import ray_box
from clusteringsdf_core.render.samplers import (depth_band_samples, importance_samples, merge_samples,
                                                uniform_samples)

__all__ = ["ClusteringSDFModel", "scene_weights", "channel_opacity", "embed_state", "embed_tensor"]


def embed_tensor(new: Tensor, old: Tensor) -> Tensor:
    """``new`` with ``old`` copied into its middle: equal shapes give ``old``; a tensor
    padded by whole cells on both sides of some dimensions (a grown grid) gets ``old``
    at its centre and keeps its own values in the padding."""
    if new.shape == old.shape:
        return old.to(new)
    grow = [a - b for a, b in zip(new.shape, old.shape)]
    if new.dim() != old.dim() or any(g < 0 or g % 2 for g in grow):
        raise ValueError(f"cannot embed a tensor of shape {tuple(old.shape)} in {tuple(new.shape)}")
    out = new.clone()
    out[tuple(slice(g // 2, g // 2 + n) for g, n in zip(grow, old.shape))] = old.to(new)
    return out


def embed_state(new_state: dict, old_state: dict) -> dict:
    """A state dict of the grown model: every entry of ``old_state`` embedded into the
    entry of the same name of ``new_state`` (:func:`embed_tensor`)."""
    return {k: embed_tensor(v, old_state[k]) if k in old_state else v for k, v in new_state.items()}


def scene_weights(sigma_scene: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Rendering weights (R, S) and transmittance (R, S) of the scene density:
    ``T(i) = exp(-sum_{j<i} sigma(j) delta_j)``, ``w(i) = T(i) (1 - exp(-sigma(i) delta_i))``."""
    tau = sigma_scene * deltas
    trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], dim=1), dim=1))
    return trans * (1.0 - torch.exp(-tau)), trans


def channel_opacity(trans: Tensor, sigma_channels: Tensor, deltas: Tensor) -> Tensor:
    """Occlusion-aware object opacity (R, c) of paper Eq. 1:
    ``O_k = sum_i T(i) * (1 - exp(-sigma_k(i) delta_i))`` with T the scene transmittance."""
    alpha_channels = 1.0 - torch.exp(-sigma_channels * deltas[..., None])          # (R, S, c)
    return (trans[..., None] * alpha_channels).sum(dim=1)


def _fd_probes(x: Tensor, step: float) -> Tensor:
    """(M * 6, 3): each point of ``x`` (M, 3) moved by +-``step`` along each axis."""
    offsets = torch.eye(3, device=x.device, dtype=x.dtype) * step
    return torch.cat([x[:, None, :] + offsets, x[:, None, :] - offsets], dim=1).reshape(-1, 3)


def _fd_gradient(sdf_probes: Tensor, step: float) -> Tensor:
    """(M, c, 3) central differences from the SDF (M * 6, c) at :func:`_fd_probes`."""
    sdf = sdf_probes.reshape(-1, 6, sdf_probes.shape[-1])
    return ((sdf[:, :3] - sdf[:, 3:]) / (2 * step)).transpose(1, 2)


def _deltas(t: Tensor) -> Tensor:
    """Sample spacings (R, S); the last sample gets its predecessor's spacing.

    (NeRF's "infinite" last interval would let a ray sampled only around a measured
    depth turn opaque at its last sample whatever the SDF says, hiding missing
    geometry from the depth loss.)
    """
    d = t[:, 1:] - t[:, :-1]
    return torch.cat([d, d[:, -1:]], dim=1).clamp(min=1e-6)


class ClusteringSDFModel(nn.Module):
    def __init__(self, config: Config, box: SceneBox):
        super().__init__()
        self.config = config
        self.box = box
        self.sdf_net = ObjectSDFNetwork(config.model, box, seed=config.trainer.seed)
        self.color_net = ColorNetwork(config.model)
        self.density = LaplaceDensity(config.model.beta_init, config.model.beta_min)
        # The represented volume, normalised (from the box; not saved).
        self.register_buffer("domain_lo", torch.as_tensor(box.lo, dtype=torch.float32), persistent=False)
        self.register_buffer("domain_hi", torch.as_tensor(box.hi, dtype=torch.float32), persistent=False)

    #: Buffers of checkpoints older than the growing box: derived from the box now.
    _LEGACY_KEYS = ("half_extent", "sdf_net.half_extent")

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state = {k: v for k, v in state_dict.items() if k not in self._LEGACY_KEYS}
        return super().load_state_dict(state, strict=strict, assign=assign)

    def grown(self, box: SceneBox) -> "ClusteringSDFModel":
        """This model over the larger volume ``box`` (same normalisation frame): every
        parameter and saved buffer is copied, the grids' old cells into the middle of
        their padded tensors, so the SDF of every object channel is unchanged at every
        old point; the room prior (channel 0) follows the new volume's walls."""
        if not np.allclose(box.frame_bounds_m, self.box.frame_bounds_m):
            raise ValueError("a grown model keeps its normalisation frame")
        ref = next(self.parameters())
        model = ClusteringSDFModel(self.config, box).to(device=ref.device)
        model.load_state_dict(embed_state(model.state_dict(), self.state_dict()))
        return model

    @property
    def num_channels(self) -> int:
        return self.config.model.num_channels

    # -- parameter groups (the grid gets a larger learning rate) ------------------
    def parameter_groups(self, lr: float, grid_lr_factor: float) -> list[dict]:
        grid = self.sdf_net.grid_parameters()
        grid_ids = {id(p) for p in grid}
        rest = [p for p in self.parameters() if id(p) not in grid_ids]
        groups = [{"params": rest, "lr": lr, "name": "networks"}]
        if grid:
            groups.append({"params": grid, "lr": lr * grid_lr_factor, "name": "grid"})
        return groups

    # -- SDF gradients --------------------------------------------------------------
    def sdf_gradient(self, x: Tensor, *, method: str, step: float) -> Tensor:
        """(M, c, 3) gradient of every channel's SDF at ``x`` (M, 3), differentiable."""
        if method == "finite_difference":
            return _fd_gradient(self.sdf_net.sdf(_fd_probes(x, step)), step)
        if method == "autograd_per_channel":
            # The whole Jacobian (c x 3 per point) in three forward-mode passes, one per axis,
            # instead of c reverse passes (the public code's loop: 12x slower at c = 50); the
            # tangents stay differentiable for the eikonal loss's backward.
            x = x.detach()
            with torch.enable_grad(), warnings.catch_warnings():
                # torch loads its forward-mode decompositions through torch.jit.script once
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                columns = [torch.func.jvp(self.sdf_net.sdf, (x,), (axis.expand_as(x),))[1]
                           for axis in torch.eye(3, device=x.device, dtype=x.dtype)]
            return torch.stack(columns, dim=-1)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            sdf = self.sdf_net.sdf(x)
            if method == "autograd_scene":
                scene = sdf.min(dim=-1).values
                g = torch.autograd.grad(scene.sum(), x, create_graph=True)[0]
                return g[:, None, :].expand(-1, sdf.shape[1], -1)
        raise ValueError(f"unknown gradient method {method!r}")

    # -- sampling ---------------------------------------------------------------------
    def sample_t(self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor,
                 depth_t: Tensor | None, *, train: bool, depth_everywhere: bool = False,
                 generator: torch.Generator | None = None) -> Tensor:
        rc = self.config.render
        perturb = train
        sampler = rc.sampler
        if sampler == "uniform":
            return uniform_samples(near, far, rc.num_samples + rc.num_samples_extra, perturb=perturb,
                                   generator=generator)
        if sampler == "depth_guided" and depth_t is not None:
            band = rc.depth_guided_band_m / self.box.scale
            valid = depth_t > 0
            d = torch.where(valid, depth_t, far)
            t_band = depth_band_samples(d, near, far, rc.depth_guided_samples, band, perturb=perturb,
                                        generator=generator)
            t_free = uniform_samples(near, torch.where(valid, torch.maximum(d - band, near), far),
                                     max(rc.num_samples_extra, 1), perturb=perturb, generator=generator)
            t = merge_samples(t_band, t_free)
            if depth_everywhere:
                return t
            # Rays without depth: importance sampling, same sample count (the one host
            # round trip of the step, for views with holes in their depth).
            missing = torch.nonzero(~valid)[:, 0]
            if missing.numel() == 0:
                return t
            t_imp = self._importance(origins[missing], dirs[missing], near[missing], far[missing],
                                     t.shape[1], perturb, generator)
            return t.index_copy(0, missing, t_imp)
        return self._importance(origins, dirs, near, far, rc.num_samples + rc.num_samples_extra,
                                perturb, generator)

    def _importance(self, origins, dirs, near, far, n_total: int, perturb: bool, generator) -> Tensor:
        rc = self.config.render
        n_extra = min(rc.num_samples_extra, n_total - 1)
        with torch.no_grad():
            t_c = uniform_samples(near, far, rc.num_samples_coarse, perturb=perturb, generator=generator)
            pts = origins[:, None, :] + dirs[:, None, :] * t_c[..., None]
            sdf = self.sdf_net.sdf(pts.reshape(-1, 3)).min(dim=-1).values.reshape(t_c.shape)
            deltas = _deltas(t_c)
            sigma = self.density(sdf)
            w, _ = scene_weights(sigma, deltas)
            t_f = importance_samples(t_c, w, n_total - n_extra, perturb=perturb, generator=generator)
        if n_extra == 0:
            return t_f
        return merge_samples(t_f, uniform_samples(near, far, n_extra, perturb=perturb, generator=generator))

    # -- rendering ----------------------------------------------------------------------
    def render(self, origins_world: Tensor, dirs: Tensor, *, depth_t: Tensor | None = None,
               depth_everywhere: bool = False, train: bool = True, eikonal_points: Tensor | None = None,
               want_normals: bool = False, want_rgb: bool = True,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Render rays given in the world frame (origins in metres, unit directions).

        ``depth_t`` (R,) is the measured distance along each ray in normalised units
        (0 = none) for depth-guided sampling; ``depth_everywhere`` says that no ray
        lacks one (the caller knows it; saves looking on the device). Eikonal gradients are computed at the
        rendered samples (a random subset) plus ``eikonal_points`` (M, 3) normalised.
        """
        lc = self.config.loss
        origins = self.box.to_normalised(origins_world)
        rc = self.config.render
        near, far = ray_box(origins, dirs, self.domain_lo, self.domain_hi, rc.near_m / self.box.scale,
                            rc.far_m / self.box.scale)
        t = self.sample_t(origins, dirs, near, far, depth_t, train=train, depth_everywhere=depth_everywhere,
                          generator=generator)
        R, S = t.shape
        pts = origins[:, None, :] + dirs[:, None, :] * t[..., None]                      # (R, S, 3)
        flat = pts.reshape(-1, 3)
        need_grad = train and lc.eikonal > 0
        normals = None
        grad = None
        uses_normal = self.config.model.color_uses_normal
        merged_fd = need_grad and lc.eikonal_method == "finite_difference" and not (uses_normal or want_normals)
        if merged_fd:
            # The eikonal points' difference probes go through the same network call as the
            # ray samples: one grid lookup (and one backward, one zeroed grid gradient per
            # level) per step instead of three.
            fd = _fd_probes(self._eikonal_samples(flat, eikonal_points, generator), lc.finite_difference_step)
            sdf, feature, parts = self.sdf_net.forward_parts(torch.cat([flat, fd]))
            n = flat.shape[0]
            grad = _fd_gradient(sdf[n:], lc.finite_difference_step)
            sdf, feature = sdf[:n], feature[:n]
            parts = None if parts is None else (parts[0][:n], parts[1][:n])
        else:
            sdf, feature, parts = self.sdf_net.forward_parts(flat)
        c = sdf.shape[1]
        scene_sdf = sdf.min(dim=-1).values
        if uses_normal or want_normals:
            g = self.sdf_gradient(flat, method=lc.eikonal_method, step=lc.finite_difference_step)
            arg = sdf.argmin(dim=-1)
            g_scene = g[torch.arange(g.shape[0], device=g.device), arg]
            normals = g_scene / g_scene.norm(dim=-1, keepdim=True).clamp(min=1e-6)
            if need_grad:
                grad = g
        deltas = _deltas(t)
        sigma_scene = self.density(scene_sdf).reshape(R, S)
        weights, trans = scene_weights(sigma_scene, deltas)
        if parts is not None and lc.labels_move_geometry is False:
            # The label losses see the geometry as fixed: opacities from the detached scene
            # SDF (and beta) plus the channel offsets, so they shape only the offsets. The
            # same opacities give the rendered labels, so what is trained is what is shown.
            scene_d, offsets = parts
            floor = lc.label_beta_min_m / self.box.scale
            if floor > 0:
                sigma_s = self.density(scene_d.detach(), detach_beta=True, beta_floor=floor).reshape(R, S)
                trans = scene_weights(sigma_s, deltas)[1]
            sigma_k = self.density(scene_d.detach()[:, None] + offsets, detach_beta=True,
                                   beta_floor=floor).reshape(R, S, c)
            opacity = channel_opacity(trans.detach(), sigma_k, deltas)
        else:
            opacity = channel_opacity(trans, self.density(sdf).reshape(R, S, c), deltas)
        acc = weights.sum(dim=1)
        out = {
            "depth_t": (weights * t).sum(dim=1),
            "acc": acc,
            "opacity": opacity,
            "weights": weights,
            "t": t,
            "scene_sdf": scene_sdf.reshape(R, S),
        }
        if want_rgb:
            view = dirs[:, None, :].expand(R, S, 3).reshape(-1, 3)
            rgb_pts = self.color_net(flat, view, feature, normals if uses_normal else None).reshape(R, S, 3)
            out["rgb"] = (weights[..., None] * rgb_pts).sum(dim=1)
        if normals is not None:
            out["normal"] = (weights[..., None] * normals.reshape(R, S, 3)).sum(dim=1)
        if need_grad and not merged_fd:
            if grad is None:             # random samples and the box's points, in one call
                grad = self.sdf_gradient(self._eikonal_samples(flat, eikonal_points, generator),
                                         method=lc.eikonal_method, step=lc.finite_difference_step)
            elif eikonal_points is not None and len(eikonal_points):   # every sample, then the box's
                grad = torch.cat([grad, self.sdf_gradient(eikonal_points, method=lc.eikonal_method,
                                                          step=lc.finite_difference_step)])
        if need_grad:
            out["grad"] = grad
        return out

    def _eikonal_samples(self, flat: Tensor, eikonal_points: Tensor | None, generator) -> Tensor:
        """The points whose SDF gradients the eikonal term sees (besides every sample when
        normals are computed): ``max(loss.eikonal_points, 256)`` random rendered samples,
        then ``eikonal_points`` (normalised) when given."""
        n = min(flat.shape[0], max(self.config.loss.eikonal_points, 256))
        idx = torch.randint(0, flat.shape[0], (n,), device=flat.device, generator=generator)
        samples = flat[idx].detach()
        if eikonal_points is None or not len(eikonal_points):
            return samples
        return torch.cat([samples, eikonal_points])

    @torch.no_grad()
    def render_opacity_image(self, K: Tensor, T_world_cam: Tensor, width: int, height: int,
                             chunk: int | None = None, rgb: bool = True) -> dict[str, Tensor]:
        """Full-image rendering (no gradients): rgb (H, W, 3) (when asked), depth (H, W)
        metres along the optical axis, opacity (H, W, c)."""
        from clusteringsdf_core.render.rays import image_pixels, pixel_rays

        chunk = chunk or self.config.render.eval_chunk_rays
        uv = image_pixels(width, height, device=K.device)
        colours, depth, opacity = [], [], []
        for start in range(0, uv.shape[0], chunk):
            o, d, z_per_t = pixel_rays(K, T_world_cam, uv[start:start + chunk])
            out = self.render(o, d, train=False, want_rgb=rgb)
            if rgb:
                colours.append(out["rgb"])
            depth.append(out["depth_t"] * z_per_t * self.box.scale)
            opacity.append(out["opacity"])
        result = {"depth": torch.cat(depth).reshape(height, width),
                  "opacity": torch.cat(opacity).reshape(height, width, -1)}
        if rgb:
            result["rgb"] = torch.cat(colours).reshape(height, width, 3)
        return result
