"""Synthetic indoor scenes with exact ground truth.

A room (floor, four walls, ceiling: the "stuff" classes) furnished with real
furniture models (Sweet Home 3D catalogs, see :mod:`.furniture`) placed on the floor
without overlap, small objects (lamps, televisions) on tables, desks and low
cabinets, and a camera that walks around the room at head height looking inwards.
Two layouts (``SyntheticSceneConfig.layout``): ``"apart"`` keeps every footprint
``object_gap`` from the others and ``wall_clearance`` from the walls, so that geometry
alone separates the objects; ``"touching"`` stands furniture side by side against
two walls, pushes chairs under a table and rests small objects on their supports, so
that objects touch as in real rooms (the camera walks between the wall furniture and
the table).
Frames are rendered by ray casting (trimesh with Embree): shaded RGB with
per-object colours and patterns, metric depth (with optional sensor-like noise),
GT instance and semantic maps. Held-out test frames come from a different path
(other height, inset and phase): novel views.

Everything is deterministic for a seed. :func:`generate_scene` returns the scene
in memory; :func:`write_synthetic_scene` writes it in the canonical layout
(:mod:`clusteringsdf_core.data.dataset`) together with the GT meshes. The pieces:
:mod:`.config` (parameters), :mod:`.furniture` (models), :mod:`.layout` (placement and
camera walks), :mod:`.renderer` (ray casting), :mod:`.scene` (generation and writing).
"""

from clusteringsdf_core.data.synthetic.config import LAYOUTS, PlacedObject, SyntheticScene, SyntheticSceneConfig
from clusteringsdf_core.data.synthetic.renderer import SceneRenderer
from clusteringsdf_core.data.synthetic.scene import generate_scene, stored_config_matches, write_synthetic_scene

__all__ = ["SyntheticSceneConfig", "SyntheticScene", "PlacedObject", "generate_scene",
           "write_synthetic_scene", "SceneRenderer", "LAYOUTS", "stored_config_matches"]
