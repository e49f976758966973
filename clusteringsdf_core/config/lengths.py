"""Lengths that follow the size of the scene.

The lengths in metres of the tree were set on rooms of 5-6.5 m: the spacing of the
channel seeds, the depth band of the sampler, the SDF truncation, the key frames'
translation, the split gap. On a tabletop (objects of 5-30 cm seen from 0.3-1 m) a
0.5 m seed spacing covers the whole scene and a 10 cm truncation band is the size of an
object. The network itself works in normalised units of the scene box, so its grid,
its initial spheres and its Laplace beta already follow the scene's size; the lengths
declared ``scene_length`` in the schema are scaled to match when a model is made:

    factor = data.length_scale, or where it is 0 (the default):
             clip(largest side of the scene bounds / data.reference_side_m, 0.05, 1)

Rooms (at least ``reference_side_m``, 4 m, on their largest side) keep the lengths as
written; a smaller scene scales them with its size. Sensor limits (``data.depth_min_m``,
``data.depth_max_m``) are not scene lengths and never change. The resolved tree holds
the scaled lengths and ``data.length_scale`` 1, so resolving it again changes nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from clusteringsdf_core.config.schema import scale_lengths

__all__ = ["MIN_LENGTH_SCALE", "REFERENCE_SIDE_M", "auto_length_scale", "length_factor", "resolve_lengths",
           "scaled_like"]

#: The default ``data.reference_side_m``: the rooms the lengths were set on are 5-6.5 m.
REFERENCE_SIDE_M = 4.0

#: The smallest derived factor (a scene of 0.2 m on its largest side, with the default
#: reference): below it the bounds are more likely a first view of a near wall than a
#: scene.
MIN_LENGTH_SCALE = 0.05


def auto_length_scale(bounds_m, reference_side_m: float) -> float:
    """The derived factor for scene bounds ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``."""
    bounds = np.asarray(bounds_m, dtype=float)
    if bounds.shape != (2, 3) or not np.isfinite(bounds).all():
        raise ValueError(f"scene bounds must be a finite (2, 3) array, got {bounds.tolist()}")
    side = float((bounds[1] - bounds[0]).max())
    return float(np.clip(side / reference_side_m, MIN_LENGTH_SCALE, 1.0))


def length_factor(length_scale: float, bounds_m, reference_side_m: float) -> float:
    """The factor a ``length_scale`` field means: itself when > 0, else derived from the
    bounds (1 when there are none)."""
    if length_scale:
        return float(length_scale)
    return 1.0 if bounds_m is None else auto_length_scale(bounds_m, reference_side_m)


def resolve_lengths(config, bounds_m) -> tuple:
    """``(config with its scene lengths scaled and data.length_scale 1, the factor)``.

    ``bounds_m`` are the scene's bounds without padding (only read when the factor is
    derived)."""
    factor = length_factor(config.data.length_scale, bounds_m, config.data.reference_side_m)
    resolved = scale_lengths(config, factor)
    if resolved.data.length_scale != 1.0:
        resolved = dataclasses.replace(resolved, data=resolved.data.replace(length_scale=1.0))
    return resolved, factor


def scaled_like(section, config_length_scale: float, factor: float):
    """A section of a tree that was not resolved (a live parameter update), scaled as the
    running model's tree was: by ``factor`` where the update derives its factor (0), by
    its own factor otherwise."""
    return scale_lengths(section, config_length_scale or factor)
