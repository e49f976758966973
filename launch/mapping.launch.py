"""ros2 launch clusteringsdf_ros mapping.launch.py [config_file:=...] [namespace:=...]
   [pose_source:=tf|pose_topic|odometry] [color_topic:=... camera_info_topic:=... depth_topic:=...
   instance_topic:=... pose_topic:=...] [output_dir:=...] [use_segmenter:=true]

The mapping node (ClusteringSDF trained online from camera, pose and segmenter topics,
publishing /objects); with use_segmenter:=true also segmenter_node, which makes the
instance ids from the same colour (and depth) topics. Nodes and arguments come from clusteringsdf_ros.launch_spec, the
same description the fallback runner (`python -m clusteringsdf_ros.launch_fallback`)
uses where launch_ros is missing.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from clusteringsdf_ros.launch_actions import to_nodes
from clusteringsdf_ros.launch_spec import MAPPING_TOPICS, mapping_nodes


def _nodes(context):
    def get(name):
        return LaunchConfiguration(name).perform(context)

    return to_nodes(mapping_nodes(get("config_file"), namespace=get("namespace"),
                                  pose_source=get("pose_source") or None,
                                  topics={k: get(k) for k in MAPPING_TOPICS},
                                  output_dir=get("output_dir") or None,
                                  use_segmenter=get("use_segmenter").strip().lower() in ("true", "1", "yes")))


def generate_launch_description():
    share = get_package_share_directory("clusteringsdf_ros")
    args = [
        DeclareLaunchArgument("config_file", default_value=os.path.join(share, "config", "mapping.yaml"),
                              description="ROS 2 parameter file (core tree + ros section)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("pose_source", default_value="",
                              description="tf, pose_topic or odometry ('' = the parameter file's)"),
        DeclareLaunchArgument("output_dir", default_value="", description="where saved maps go"),
        DeclareLaunchArgument("use_segmenter", default_value="false",
                              description="also start segmenter_node (its default detector backend) to make "
                                          "the instance ids from the colour (and depth) images"),
    ] + [DeclareLaunchArgument(k, default_value=v, description=f"remap of {v}")
         for k, v in MAPPING_TOPICS.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])
