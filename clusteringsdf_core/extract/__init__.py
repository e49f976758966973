"""From a trained model to objects: meshes per channel, boxes, classes, stable ids.

- :mod:`.objects`: :func:`extract_objects`, a snapshot's channels -> objects with
  meshes, gravity-aligned boxes, volumes and classes;
- :mod:`.tracking`: :class:`ObjectTracker`, ids that stay stable between extractions
  while training goes on;
- :mod:`.export`: :func:`export_objects`, meshes and ``objects.json`` on disk.
"""

from clusteringsdf_core.extract.export import export_objects
from clusteringsdf_core.extract.objects import (ExtractedObject, box_iou_3d, channel_parts, extract_objects,
                                                oriented_box_upright, sdf_grid)
from clusteringsdf_core.extract.tracking import ObjectTracker, TrackedObject

__all__ = ["ExtractedObject", "extract_objects", "channel_parts", "sdf_grid", "ObjectTracker", "TrackedObject",
           "export_objects", "oriented_box_upright", "box_iou_3d"]
