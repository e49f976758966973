"""One description of the nodes each launch starts, used by ``ros2 launch`` and by the
fallback runner for installs without launch_ros.

:func:`mapping_nodes` and :func:`replay_nodes` return :class:`NodeSpec` values (plain
data, no ROS import). ``launch/*.launch.py`` turn them into ``launch_ros`` Node
actions; :mod:`clusteringsdf_ros.launch_fallback` turns them into processes with the
same ``--ros-args`` (so the fallback is not a second definition).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["NodeSpec", "mapping_nodes", "replay_nodes", "ros_args", "PACKAGE"]

PACKAGE = "clusteringsdf_ros"

#: Input topics of the mapping node that a launch may remap (argument name -> topic).
MAPPING_TOPICS = {
    "color_topic": "color/image_raw",
    "camera_info_topic": "color/camera_info",
    "depth_topic": "depth/image_raw",
    "instance_topic": "segmentation/instance",
    "pose_topic": "camera/pose",
}

#: Inputs of the mapping node that the segmenter node shares: its colour and depth inputs
#: and its instance output follow the same remaps.
SEGMENTER_TOPICS = ("color_topic", "depth_topic", "instance_topic")


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    namespace: str = ""
    parameter_files: tuple[str, ...] = ()
    parameters: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    package: str = PACKAGE


def mapping_nodes(config_file: str, *, namespace: str = "", pose_source: str | None = None,
                  topics: dict[str, str] | None = None, output_dir: str | None = None,
                  use_segmenter: bool = False, segmenter_params: dict | None = None) -> list[NodeSpec]:
    """The mapping node with its parameter file, optional pose source and topic remaps.

    ``use_segmenter`` adds a ``segmenter_node`` (parameters ``segmenter_params``, e.g.
    ``{"backend": "torchscript", "model_path": ...}``) in the same namespace that makes
    the mapping node's instance ids from its colour (and depth) images: the
    ``color_topic``, ``depth_topic`` and ``instance_topic`` remaps apply to both nodes.
    """
    parameters = {}
    if pose_source:
        parameters["ros.pose_source"] = pose_source
    if output_dir:
        parameters["ros.output_dir"] = output_dir
    remaps = tuple((MAPPING_TOPICS[k], v) for k, v in (topics or {}).items()
                   if k in MAPPING_TOPICS and v and v != MAPPING_TOPICS[k])
    nodes = [NodeSpec("mapping_node", "mapping_node", namespace, (str(config_file),), parameters, remaps)]
    if use_segmenter:
        shared = {MAPPING_TOPICS[k] for k in SEGMENTER_TOPICS}
        nodes.append(NodeSpec("segmenter_node", "segmenter_node", namespace, (),
                              dict(segmenter_params or {}),
                              tuple((src, dst) for src, dst in remaps if src in shared)))
    return nodes


#: Topics of a bag written by ``write_bag_from_dataset`` that a replay with the segmenter
#: node in the loop plays (the bag's own segmentation topics, if any, stay unplayed).
SENSOR_TOPICS = ("/color/image_raw", "/color/camera_info", "/depth/image_raw", "/camera/pose",
                 "/tf", "/tf_static")


#: Frames the segmenter node of a replay may hold while busy (its ``queue_size``): a
#: bag's frames are all wanted, and its player does not wait, so a slow moment of the
#: segmenter (model loading, the mapping node starting beside it) would drop frames
#: with the live default of 1. At 30 Hz this is about half a second of images; it stays
#: under the mapping node's ``ros.sync_queue_size`` (30 by default), which must still
#: hold the colour images that the late segmentations pair with.
REPLAY_SEGMENTER_QUEUE = 16


def replay_nodes(bag_path: str, config_file: str, *, namespace: str = "", rate: float = 1.0,
                 loop: bool = False, start_offset_s: float = 0.0, output_dir: str | None = None,
                 wait_for_subscribers_s: float = 60.0, semantic_topic: str | None = None,
                 use_segmenter: bool = False, segmenter_params: dict | None = None) -> list[NodeSpec]:
    """Bag player + mapping node. Bags from ``write_bag_from_dataset`` carry a PoseStamped
    topic, which works where tf2_ros is missing, so the replay uses it, and the
    segmenter's class ids where the dataset has them: the mapping node takes them as an
    optional input (``semantic_topic``, default ``segmentation/semantic``; '' = not used),
    which names each object's class and tells unlabelled pixels (void class) from
    background.

    ``use_segmenter`` puts the ``segmenter_node`` in the loop (a bag without labels, e.g.
    ``clusteringsdf bag from-dataset --no-labels`` of a ScanNet ``.sens``): the player
    plays only :data:`SENSOR_TOPICS` and the segmenter makes the instance ids (and,
    with its default detector backend, the class ids on ``segmentation/semantic``) from
    the colour and depth; it queues up to :data:`REPLAY_SEGMENTER_QUEUE` frames while
    busy instead of keeping only the newest (``segmenter_params`` may say otherwise)."""
    player_params = {
        "bag_path": str(Path(bag_path).expanduser()), "rate": float(rate), "loop": bool(loop),
        "start_offset_s": float(start_offset_s),
        # the mapping node takes seconds to start (torch): do not play into the void
        "wait_for_subscribers_s": float(wait_for_subscribers_s),
        # the bag's time is the mapping node's: its outputs carry stamps of the inputs' time base
        "publish_clock": True}
    if use_segmenter:
        player_params["topics"] = list(SENSOR_TOPICS)
        # The segmenter subscribes to the images long before the mapping node (torch) is
        # up: wait for the mapping node's pose subscription, and for both nodes on the images.
        player_params["wait_for_topics"] = ["/camera/pose", "/color/image_raw:2", "/depth/image_raw:2"]
    player = NodeSpec("bag_player", "bag_player", namespace, (), player_params)
    nodes = mapping_nodes(config_file, namespace=namespace, pose_source="pose_topic", output_dir=output_dir,
                          use_segmenter=use_segmenter,
                          segmenter_params={"queue_size": REPLAY_SEGMENTER_QUEUE, **(segmenter_params or {})})
    nodes = [replace(n, parameters={**n.parameters, "use_sim_time": True}) for n in nodes]
    if semantic_topic is None:
        semantic_topic = "segmentation/semantic"
    nodes[0] = replace(nodes[0], parameters={**nodes[0].parameters, "ros.semantic_topic": semantic_topic})
    return [player] + nodes


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def ros_args(spec: NodeSpec) -> list[str]:
    """The ``--ros-args`` of a node spec, as ``ros2 run`` and the fallback pass them."""
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        args += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for path in spec.parameter_files:
        args += ["--params-file", path]
    for key, value in spec.parameters.items():
        args += ["-p", f"{key}:={_value(value)}"]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args
