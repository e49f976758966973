"""ROS parameters: the flattened core config tree plus a ROS-only ``ros`` section.

A node's parameters are ``<section>.<field>`` for every field of
:class:`clusteringsdf_core.config.Config` (``loss.lambda_diff``) and ``ros.<field>``
for :class:`RosConfig` (topics, frames, QoS, rates, outputs). ``config/mapping.yaml``
is a ROS 2 parameter file holding both, and the offline tools read the same file
(they skip the ``ros`` section). This module imports no ROS package, so the same
definitions serve a launch description, a fallback runner and the tests.
"""

from __future__ import annotations

import array
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clusteringsdf_core.config.yaml_io import missing_field_hint
from clusteringsdf_core.config import (Config, ConfigError, Section, build_section, field_metadata, flatten,
                                       load_yaml, param, read_yaml_tree, unflatten)

__all__ = ["RosConfig", "load_params_file", "flatten_all", "build_configs", "parse_bounds",
           "parse_extrinsic", "parameter_help", "parameter_metadata", "change_kind", "BOUNDS_PARAMETER",
           "EXTRINSIC_PARAMETER", "ARRAY_PARAMETERS"]

#: The parameter that fixes the scene bounds (a double array; empty = estimated).
BOUNDS_PARAMETER = "ros.bounds_m"
#: The camera optical frame's pose in the body frame of the pose messages (a double
#: array [x, y, z, qx, qy, qz, qw]; empty = identity or TF, see pose_frames).
EXTRINSIC_PARAMETER = "ros.camera_extrinsic"
#: Double-array parameters outside :class:`RosConfig` (unset = empty: a parameter file
#: cannot hold an empty list, and rclpy would type one as a byte array).
ARRAY_PARAMETERS = (BOUNDS_PARAMETER, EXTRINSIC_PARAMETER)
#: Parameters that apply to the running model (prefixes and names); ``ros.extract_period_s``
#: applies at once too.
_LIVE_PREFIXES = ("loss.",)
_LIVE_NAMES = ("trainer.lr", "ros.extract_period_s")


@dataclass(frozen=True)
class RosConfig(Section):
    """Topics, frames, QoS, rates and outputs of the mapping node."""

    name: ClassVar[str] = "ros"

    color_topic: str = param("color/image_raw", "RGB image (rgb8/bgr8/rgba8/mono8)")
    camera_info_topic: str = param("color/camera_info", "camera intrinsics of the RGB image")
    depth_topic: str = param("depth/image_raw", "depth image (16UC1 mm or 32FC1 m); '' = RGB only")
    instance_topic: str = param("segmentation/instance", "2D instance ids (16UC1/32SC1, 0 = none)")
    semantic_topic: str = param("", "2D semantic class ids (semantic mode); '' = not used")
    confidence_topic: str = param("", "segmenter confidence (32FC1); '' = not used")
    pose_source: str = param("tf", "where camera poses come from: TF (map -> camera optical "
                             "frame at the image stamp), a PoseStamped topic or an Odometry topic",
                             choices=("tf", "pose_topic", "odometry"))
    pose_topic: str = param("camera/pose", "geometry_msgs/PoseStamped (pose_source: pose_topic) of the "
                            "camera optical frame (or of the body ros.camera_extrinsic is given in) in "
                            "its header frame (ros.map_frame, or a frame TF relates to it)")
    odometry_topic: str = param("odom", "nav_msgs/Odometry (pose_source: odometry) of its child_frame_id "
                                "(the camera, or a body such as base_link with ros.camera_extrinsic or "
                                "TF body <- camera) in its header frame (ros.map_frame, or a frame TF "
                                "relates to it)")
    map_frame: str = param("map", "fixed frame of the map and the published objects (REP 105); 'odom' "
                           "maps in the odometry frame where nothing publishes map -> odom")
    camera_frame: str = param("", "camera optical frame; '' = the image header's frame_id")
    objects_topic: str = param("/objects", "published clusteringsdf_ros/ObjectArray")
    detections_topic: str = param("", "also publish the objects as vision_msgs/Detection3DArray here "
                                  "(latched, with /objects; needs vision_msgs); '' = off")
    collision_objects_topic: str = param("", "also feed MoveIt: moveit_msgs/CollisionObject ADD / MOVE / "
                                         "REMOVE per object here, e.g. /collision_object (needs "
                                         "moveit_msgs); '' = off")
    class_table: str = param("", "semantic class table (YAML or JSON: void first, then one "
                             "{name, is_thing} per class id; README, canonical dataset layout) of the semantic "
                             "ids and of the published class names; '' = the built-in ScanNet-style "
                             "table of 21 classes and void")
    sync_slop_s: float = param(0.02, "largest stamp difference of synchronised inputs, seconds",
                               min=0.0)
    sync_queue_size: int = param(30, "messages per input kept by the synchroniser", min=1)
    frame_queue_size: int = param(8, "converted frames waiting for the trainer (drop oldest)", min=1)
    image_qos: str = param("sensor_data", "QoS of image subscriptions: sensor_data = best effort, "
                           "reliable = reliable (e.g. bag replays); both keep ros.sync_queue_size messages",
                           choices=("sensor_data", "reliable"))
    tf_timeout_s: float = param(0.05, "how long an input set may wait for its TF pose, seconds (retried "
                                "from a timer: input callbacks never wait for TF)", min=0.0)
    publish_period_s: float = param(5.0, "seconds between checks for a changed extraction to publish on "
                                    "/objects and the markers (latched: published only when changed)", min=0.0,
                                    min_exclusive=True)
    extract_period_s: float = param(10.0, "seconds between mesh extractions while training",
                                    min=0.0, min_exclusive=True)
    status_period_s: float = param(1.0, "seconds between status/diagnostics messages", min=0.0,
                                   min_exclusive=True)
    output_dir: str = param("~/.ros/clusteringsdf", "where saved maps go (meshes, objects JSON, "
                            "checkpoint)")
    save_on_shutdown: bool = param(True, "save the map when the node shuts down")
    autosave_period_s: float = param(60.0, "seconds between autosaves of the map being trained (the "
                                     "checkpoint with its key frames and object ids, into run_<time>/ under "
                                     "<output_dir>/autosave; the newest two of a run are kept); 0 = off",
                                     min=0.0)
    initial_map: str = param("", "map to start from and go on training: a checkpoint, a ~/save_map folder "
                             "or an autosave folder (its newest autosave); '' = a new map from the first "
                             "frames")
    map_growth: bool = param(True, "with estimated bounds (ros.bounds_m empty): enlarge the map when "
                             "key frames see past it (nothing learned is lost)")
    map_max_side_m: float = param(20.0, "longest side, per axis, the map may grow to (metres); the "
                                  "dense grids' memory grows with the volume", min=0.0, min_exclusive=True)


def flatten_all(config: Config, ros: RosConfig) -> dict[str, Any]:
    """Every parameter of the mapping node, dotted names to values."""
    flat = flatten(config)
    flat.update({f"ros.{k}": v for k, v in dataclasses.asdict(ros).items()})
    return flat


def load_params_file(path: str | Path, *, partial: bool = False) -> tuple[Config, RosConfig]:
    """Read a ROS 2 parameter file (or plain tree) into the core tree and the ROS section."""
    config = load_yaml(path, partial=partial)
    try:
        ros = build_section(RosConfig, read_yaml_tree(path).get("ros") or {}, partial=partial)
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path}){missing_field_hint(exc)}") from None
    return config, ros


def parameter_metadata(name: str) -> dict:
    """Help text and constraints of a node parameter (``loss.lambda_diff``,
    ``ros.map_frame``): ``help``, ``min``, ``max``, ``min_exclusive``, ``choices``."""
    section, _, field_name = name.partition(".")
    if section != "ros":
        return field_metadata(name)
    for f in dataclasses.fields(RosConfig):
        if f.name == field_name:
            return dict(f.metadata)
    raise ConfigError(name, "unknown field")


def parameter_help(name: str) -> str:
    """The description of a node parameter."""
    return parameter_metadata(name)["help"]


def change_kind(name: str) -> str:
    """When a changed parameter takes effect: ``live`` (now, in the running model),
    ``reset`` (the next ``~/reset``: a new model) or ``restart`` (the node's next start:
    the node declares these read-only)."""
    if name.startswith(_LIVE_PREFIXES) or name in _LIVE_NAMES:
        return "live"
    if name.startswith("ros.") and name != BOUNDS_PARAMETER:   # the extrinsic too
        return "restart"
    return "reset"


def _plain(value: Any) -> Any:
    """Parameter values as the config tree wants them (arrays -> lists)."""
    if isinstance(value, (array.array, tuple, np.ndarray)):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return value


def parse_bounds(value: Any) -> np.ndarray | None:
    """``ros.bounds_m`` as (2, 3) [min, max], or None when empty or unset."""
    values = [] if value is None else list(_plain(value))
    if not values:
        return None
    b = np.asarray(values, dtype=np.float64)
    if b.shape != (6,) or not np.all(np.isfinite(b)) or np.any(b[:3] >= b[3:]):
        raise ConfigError(BOUNDS_PARAMETER, "expected [] or six finite numbers "
                          f"[xmin, ymin, zmin, xmax, ymax, zmax] with min < max, got {values}")
    return b.reshape(2, 3)


def parse_extrinsic(value: Any) -> np.ndarray | None:
    """``ros.camera_extrinsic`` ([x, y, z, qx, qy, qz, qw]: the camera optical frame in
    the pose messages' body frame, metres and a unit quaternion) as a 4x4, or None when
    empty or unset."""
    from clusteringsdf_core.data.frame import check_pose
    from clusteringsdf_ros.transforms import quaternion_to_rotation

    values = [] if value is None else [float(v) for v in _plain(value)]
    if not values:
        return None
    if len(values) != 7 or not np.all(np.isfinite(values)):
        raise ConfigError(EXTRINSIC_PARAMETER, f"expected [] or seven finite numbers [x, y, z, qx, qy, "
                          f"qz, qw], got {values}")
    T = np.eye(4)
    try:
        T[:3, :3], T[:3, 3] = quaternion_to_rotation(*values[3:]), values[:3]
        return check_pose(T)
    except ValueError as exc:
        raise ConfigError(EXTRINSIC_PARAMETER, str(exc)) from None


def build_configs(flat: dict[str, Any]) -> tuple[Config, RosConfig, np.ndarray | None]:
    """The core tree, the ROS section and the fixed bounds of flat parameter values;
    ConfigError names the first invalid one."""
    core = {k: _plain(v) for k, v in flat.items() if not k.startswith("ros.")}
    ros = {k[4:]: _plain(v) for k, v in flat.items() if k.startswith("ros.") and k not in ARRAY_PARAMETERS}
    config = Config.from_dict(unflatten(core))
    return config, build_section(RosConfig, ros), parse_bounds(flat.get(BOUNDS_PARAMETER))
