"""Camera geometry shared by every module: one pinhole model (:mod:`.camera`) and one
scene extent from depth (:mod:`.bounds`).

Conventions (``docs/METHOD.md``, Formats): optical-frame cameras (x right, y down,
z forward), ``T_world_cam`` maps camera to world coordinates, and pixel ``i`` has its
centre at ``i + 0.5`` in the continuous image plane of
:class:`~clusteringsdf_core.data.frame.Intrinsics`.
"""

from clusteringsdf_core.geometry.bounds import bounds_from_depth, depth_lattice
from clusteringsdf_core.geometry.camera import (backproject, camera_directions, camera_points, project,
                                                world_rays)

__all__ = ["camera_directions", "camera_points", "backproject", "project", "world_rays",
           "bounds_from_depth", "depth_lattice"]
