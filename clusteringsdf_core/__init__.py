"""clusteringsdf_core: the ROS-free heart of clusteringsdf_ros.

ClusteringSDF (ECCV 2024) as a small library: an object-compositional neural SDF
whose rendered per-channel object opacities are clustered, view by view, against
2D instance ids that are not consistent across views. This package never imports
ROS; it runs wherever torch runs.
"""

__version__ = "0.1.0"
