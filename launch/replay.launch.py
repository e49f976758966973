"""ros2 launch clusteringsdf_ros replay.launch.py bag:=BAG [rate:=1.0] [loop:=false]
   [start_offset_s:=0.0] [config_file:=...] [namespace:=...] [output_dir:=...]
   [use_segmenter:=false]

Replays a rosbag2 written by `clusteringsdf_ros.bags.write_bag_from_dataset` (or any bag
with the same topics) with the package's bag_player into the mapping node. On installs
with `ros2 bag play` either player works. With use_segmenter:=true the segmenter_node
makes the instance ids from the replayed colour and depth (a bag without labels, e.g.
`clusteringsdf bag from-dataset --no-labels` of a ScanNet .sens). Same node description
as the fallback runner.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from clusteringsdf_ros.launch_actions import to_nodes
from clusteringsdf_ros.launch_spec import replay_nodes


def _nodes(context):
    def get(name):
        return LaunchConfiguration(name).perform(context)

    return to_nodes(replay_nodes(get("bag"), get("config_file"), namespace=get("namespace"),
                                 rate=float(get("rate")), loop=get("loop").lower() == "true",
                                 start_offset_s=float(get("start_offset_s")),
                                 output_dir=get("output_dir") or None,
                                 use_segmenter=get("use_segmenter").strip().lower() in ("true", "1", "yes")))


def generate_launch_description():
    share = get_package_share_directory("clusteringsdf_ros")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder (mcap or sqlite3)"),
        DeclareLaunchArgument("rate", default_value="1.0"),
        DeclareLaunchArgument("loop", default_value="false"),
        DeclareLaunchArgument("start_offset_s", default_value="0.0"),
        DeclareLaunchArgument("config_file", default_value=os.path.join(share, "config", "mapping.yaml")),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("output_dir", default_value=""),
        DeclareLaunchArgument("use_segmenter", default_value="false",
                              description="segmenter_node in the loop: instance ids from the replayed "
                                          "colour and depth instead of the bag's segmentation topics"),
        OpaqueFunction(function=_nodes),
    ])
