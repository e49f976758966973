"""The online mapping engine: a stream of frames in, objects with stable ids out (no ROS).

:class:`~clusteringsdf_core.online.engine.MappingEngine` is driven by the mapping node,
the bench's ``clusteringsdf_online`` method, the demo and the tests alike.
"""

from clusteringsdf_core.online.counters import ENGINE_COUNTERS, Counters
from clusteringsdf_core.online.engine import BOOTSTRAP_FRAMES, MappingEngine
from clusteringsdf_core.online.extraction import ObjectsResult
from clusteringsdf_core.online.extent import estimate_bounds
from clusteringsdf_core.online.labels import compact_labels
from clusteringsdf_core.online.observations import ViewSummary, count_observations, view_summaries
from clusteringsdf_core.online.poses import PoseHistory

__all__ = ["MappingEngine", "ObjectsResult", "Counters", "ENGINE_COUNTERS", "BOOTSTRAP_FRAMES",
           "estimate_bounds", "compact_labels", "ViewSummary", "count_observations",
           "view_summaries", "PoseHistory"]
