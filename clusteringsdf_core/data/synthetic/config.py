"""The parameters of a synthetic scene and what a generated scene holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.synthetic.furniture import FurnitureModel

__all__ = ["LAYOUTS", "SyntheticSceneConfig", "PlacedObject", "SyntheticScene"]

#: Values of ``SyntheticSceneConfig.layout``; the first is the default.
LAYOUTS = ("apart", "touching")


@dataclass(frozen=True)
class SyntheticSceneConfig:
    """Parameters of a synthetic scene (all lengths in metres, before ``scale``).

    ``layout`` (one of :data:`LAYOUTS`): ``"apart"`` places every footprint at least
    ``object_gap`` from the others and ``wall_clearance`` from the walls; ``"touching"``
    stands furniture against the walls x = -w/2 and x = +w/2, side by side without gap,
    pushes chairs under a table (or desk) in the middle of the room and rests small
    objects on their supports: ``object_gap`` is then unused, and ``wall_clearance`` is
    the corridor of the camera between the wall furniture and the table.
    """

    seed: int = 0
    room_width_range: tuple[float, float] = (5.0, 6.5)    # x extent
    room_depth_range: tuple[float, float] = (4.0, 5.5)    # y extent
    room_height: float = 2.7
    num_objects: int = 8             # large objects on the floor
    num_small_objects: int = 2       # objects on tables / desks / low cabinets
    wall_clearance: float = 0.9      # free corridor along the walls (touching: along the wall
                                     # furniture), where the camera walks
    object_gap: float = 0.15         # minimum gap between object footprints ("apart" layout)
    layout: str = "apart"            # "apart": objects stand apart; "touching": against walls,
                                     # side by side, chairs under tables (see the docstring)
    furniture: str = "auto"          # "auto" | "sweethome3d" | "procedural"
    scale: float = 1.0               # every length of the generated scene (room, furniture, camera
                                     # walk) times this, after the layout: 0.15 makes a tabletop
                                     # (objects of 1.5-30 cm seen from 0.1-0.8 m); the images keep
                                     # their size and field of view
    width: int = 320
    height: int = 240
    hfov_deg: float = 70.0
    num_train: int = 80
    num_test: int = 20
    camera_height: float = 1.5
    frame_rate_hz: float = 5.0       # stamps of the walk (for bags)
    depth_noise: bool = True         # Kinect-like axial noise and dropouts at grazing angles
    rgb_noise: float = 2.0           # std of RGB noise, 8-bit levels

    def __post_init__(self) -> None:
        if self.num_objects < 1:
            raise ValueError("num_objects must be >= 1")
        if min(self.width, self.height) < 8:
            raise ValueError("image size must be at least 8x8")
        if self.num_train < 1 or self.num_test < 0:
            raise ValueError("need at least one training frame")
        if not (0.0 < self.scale <= 10.0):
            raise ValueError(f"scale must be in (0, 10], got {self.scale}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose from {LAYOUTS}")


@dataclass
class PlacedObject:
    """A furniture model placed in the room."""

    instance_id: int
    class_id: int
    model: FurnitureModel
    T_world_obj: np.ndarray          # (4, 4)
    parts_world: list[tuple[trimesh.Trimesh, np.ndarray]] = field(default_factory=list)

    def mesh(self) -> trimesh.Trimesh:
        return trimesh.util.concatenate([m for m, _ in self.parts_world])


@dataclass
class SyntheticScene:
    config: SyntheticSceneConfig
    room_size: np.ndarray                   # (3,) width, depth, height
    objects: list[PlacedObject]
    stuff: list[tuple[trimesh.Trimesh, int]]   # (mesh, class id) of floor, walls, ceiling
    dataset: SceneDataset
    furniture_source: str
