"""The ``mapping_node``: camera + segmenter topics in, objects with stable ids out.

Thin glue over the ROS-free online engine
(:class:`~clusteringsdf_core.online.engine.MappingEngine`); the README's "Topics,
services and the mapping node" is the user's reference (topics, services, parameters).
What this module does:

- **inputs**: colour, camera_info and instance labels (+ depth, semantic ids and
  confidence when their ``ros.*_topic`` is set, as optional inputs) synchronised by
  :class:`~clusteringsdf_ros.sync.RosApproximateSync`; the camera pose from TF
  (``ros.pose_source: tf``; without ``tf2_ros`` ONE error, then the PoseStamped topic),
  a PoseStamped or an Odometry topic, matched to the image stamp through a short pose
  history (:class:`~clusteringsdf_core.online.poses.PendingSets`). Pose messages may be
  of a body (``base_link``) in another frame (``odom``): ``ros.camera_extrinsic`` or TF
  puts them in the map (:mod:`~clusteringsdf_ros.pose_frames`); TF is asked with a zero
  timeout, and sets whose TF pose has not come wait on a timer. Callbacks only
  convert (:func:`~clusteringsdf_ros.inputs.frame_from_messages`), validate and
  enqueue into the engine's bounded queue. Every kind of bad input gets a named
  counter in the status and one throttled log line; none of them touches the model.
  Input stamps more than :data:`TIME_JUMP_BACK_S` behind the last set (a looping bag)
  clear the synchroniser and the old poses (``time_jump_back``); smaller steps back are
  ``out_of_order`` drops. Callback wall times are in the status (``callback_*``).
- **the engine** trains on its own thread, extracts and tracks ids on another every
  ``ros.extract_period_s``, grows estimated bounds (``ros.map_growth``) and autosaves
  every ``ros.autosave_period_s`` into ``<ros.output_dir>/autosave/run_<time>/``.
  ``ros.initial_map`` (or ``~/load_map``) starts from a saved map: the model goes on
  training with the new frames and its object ids continue.
- **outputs**: ``ros.objects_topic`` (``ObjectArray``, reliable + transient local) and
  ``~/markers``, checked every ``ros.publish_period_s`` and published when the objects
  changed (:func:`~clusteringsdf_ros.object_msgs.objects_signature`); ``~/status`` (DiagnosticArray:
  iteration, losses, it/s, frames, every counter, the autosave) every
  ``ros.status_period_s``.
- **services**: ``~/save_map``, ``~/reset``, ``~/extract_now`` (``std_srvs/Trigger``)
  and ``~/load_map`` (``clusteringsdf_ros/LoadMap``). The map is saved on shutdown when
  ``ros.save_on_shutdown``.
- **parameters**: every field of the core tree with its help text, defaults from the
  ``cpu`` preset, plus ``ros.*`` (:class:`~clusteringsdf_ros.params.RosConfig`) and
  ``ros.bounds_m``. Changes are validated as a whole tree; ``loss.*`` and
  ``trainer.lr`` apply to the running model, ``ros.extract_period_s`` at once, other
  core fields at the next ``~/reset``; other ``ros.*`` fields are read-only. Descriptors
  carry the schema's ranges and choices (:mod:`~clusteringsdf_ros.descriptors`).

    python -m clusteringsdf_ros.mapping_node --ros-args --params-file config/mapping.yaml
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from clusteringsdf_core.config import ConfigError, flatten
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable, load_class_table
from clusteringsdf_core.data.frame import check_pose
from clusteringsdf_core.online import ENGINE_COUNTERS, BOOTSTRAP_FRAMES, Counters, MappingEngine, PoseHistory
from clusteringsdf_core.online.poses import PendingSets
from clusteringsdf_core.online.extent import BOUNDS_MARGIN_XY_M, BOUNDS_MARGIN_Z_M
from clusteringsdf_core.presets import preset
from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.inputs import INPUT_COUNTERS, CallbackTimes, InputError, frame_from_messages
from clusteringsdf_ros.map_services import MapServices, output_root
from clusteringsdf_ros.msg import ObjectArray
from clusteringsdf_ros.node_main import spin_node
from clusteringsdf_ros.object_msgs import (latched_qos, objects_signature, objects_to_markers, objects_to_msg,
                                           status_to_diagnostics)
from clusteringsdf_ros.descriptors import declare, parameter_descriptor
from clusteringsdf_ros.params import (BOUNDS_PARAMETER, EXTRINSIC_PARAMETER, RosConfig, build_configs,
                                      change_kind, parameter_metadata, parse_extrinsic)
from clusteringsdf_ros.planner_outputs import PlannerPublishers
from clusteringsdf_ros.pose_frames import FrameChain, PoseFrameError, TfLookup
from clusteringsdf_ros.sync import RosApproximateSync

__all__ = ["MappingNode", "COUNTERS", "TIME_JUMP_BACK_S", "main"]

_NS = 1_000_000_000

#: A synchronised set waits at most this long (wall time) for a pose newer than its stamp.
POSE_WAIT_S = 1.0
#: Seconds between two log lines of one kind of bad input.
LOG_THROTTLE_S = 5.0
#: Input stamps more than this far behind the last ones (seconds) restart the timeline
#: (a looping bag player): smaller steps back are out-of-order drops.
TIME_JUMP_BACK_S = 1.0

#: Every counter of the status, with what it counts: the inputs', then the engine's.
COUNTERS: dict[str, str] = {**INPUT_COUNTERS, **ENGINE_COUNTERS,
                             "objects_published": "/objects publications (one per changed extraction)",
                             "collision_operations": "CollisionObject ADD / MOVE / REMOVE messages sent "
                                                     "(ros.collision_objects_topic)"}

class MappingNode(Node):
    """The mapping node (see the module docstring). ``**kwargs`` go to ``rclpy.node.Node``
    (``context``, ``parameter_overrides``, ...)."""

    def __init__(self, **kwargs):
        super().__init__("mapping_node", **kwargs)
        self._declare_parameters()
        self.config, self.ros, bounds = build_configs(self._flat)  # ConfigError: refuse to start
        self.classes = _class_table(self.ros.class_table)
        self.frames = FrameChain(self.ros.map_frame, camera_frame=self.ros.camera_frame,
                                 extrinsic=parse_extrinsic(self._flat[EXTRINSIC_PARAMETER]))
        self.counters = Counters(tuple(COUNTERS))
        # Wall time of the input callbacks (synchronised sets incl. conversion; poses).
        self.callback_times = {"synced": CallbackTimes(), "pose": CallbackTimes()}
        self._loggers: dict[str, Any] = {}
        self.engine = MappingEngine(self.config, classes=self.classes, bounds_m=bounds,
                                    queue_size=self.ros.frame_queue_size,
                                    extract_period_s=self.ros.extract_period_s,
                                    counters=self.counters,
                                    now_ns=lambda: self.get_clock().now().nanoseconds,
                                    log=self._engine_log, grow_map=self.ros.map_growth,
                                    max_side_m=self.ros.map_max_side_m,
                                    autosave_dir=output_root(self.ros) / "autosave",
                                    autosave_period_s=self.ros.autosave_period_s)
        self.pending_reset: set[str] = set()     # changed parameters waiting for ~/reset
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._timers_group = MutuallyExclusiveCallbackGroup()
        self._services_group = MutuallyExclusiveCallbackGroup()
        self._lock = threading.Lock()      # input stamps and frame indices
        self._frame_index = 0
        self._last_set_ns: int | None = None
        self.poses = PoseHistory(max_len=max(50, 10 * self.ros.sync_queue_size))
        self.pending = PendingSets(self.poses, slop_ns=int(round(self.ros.sync_slop_s * _NS)),
                                   max_waiting=self.ros.sync_queue_size, wait_s=POSE_WAIT_S)
        self._setup_inputs()

        latched = latched_qos()
        self.objects_pub = self.create_publisher(ObjectArray, self.ros.objects_topic, latched)
        self.markers_pub = self.create_publisher(MarkerArray, "~/markers", latched)
        self.status_pub = self.create_publisher(DiagnosticArray, "~/status", 10)
        self.planner = PlannerPublishers(self, detections_topic=self.ros.detections_topic,
                                         collision_objects_topic=self.ros.collision_objects_topic)
        self._published: tuple[int, tuple] | None = None   # (result seq, objects signature)
        self._publish_lock = threading.Lock()
        # Timers on the steady clock: with use_sim_time (a bag's /clock) a ROS-time timer
        # would stop with the bag, while training, publishing and status go on.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._publish_timer = self.create_timer(self.ros.publish_period_s, self.publish_objects, clock=steady,
                                                callback_group=self._timers_group)
        self._status_timer = self.create_timer(self.ros.status_period_s, self._publish_status, clock=steady,
                                               callback_group=self._timers_group)
        self._status_last: tuple[float, int] | None = None
        self.map_services = MapServices(self, self._services_group)
        if self.ros.initial_map:
            self.map_services.load(self.ros.initial_map)
        self._shut = False
        self.engine.start()
        self.get_logger().info(
            f"mapping: {', '.join(self._input_topics)}; pose from {self.pose_source}; "
            f"objects on {self.objects_pub.topic_name}")

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        defaults = {**flatten(preset("cpu")),
                    **{f"ros.{k}": v for k, v in dataclasses.asdict(RosConfig()).items()}}
        for name, value in defaults.items():
            # ros.* fields a running node cannot take are read-only: set them at launch
            declare(self, name, value, parameter_descriptor(
                parameter_metadata(name), value, read_only=change_kind(name) == "restart"))
        # An empty list would be typed BYTE_ARRAY: declare the double array by type.
        self.declare_parameter(BOUNDS_PARAMETER, Parameter.Type.DOUBLE_ARRAY, ParameterDescriptor(
            description="scene bounds [xmin, ymin, zmin, xmax, ymax, zmax] in metres, map frame; "
                        f"unset/empty = from the depth of the first {BOOTSTRAP_FRAMES} frames "
                        f"plus {BOUNDS_MARGIN_XY_M} m horizontally and {BOUNDS_MARGIN_Z_M} m "
                        "vertically, grown as later frames see past them (ros.map_growth)"))
        self.declare_parameter(EXTRINSIC_PARAMETER, Parameter.Type.DOUBLE_ARRAY, ParameterDescriptor(
            description="pose of the camera optical frame in the body frame of the pose messages (the "
                        "Odometry child_frame_id, e.g. base_link), [x, y, z, qx, qy, qz, qw]; unset/empty "
                        "= the identity when that frame is the camera's, else TF body <- camera",
            read_only=True))
        self._flat = {name: self.get_parameter(name).value for name in defaults}
        for name in (BOUNDS_PARAMETER, EXTRINSIC_PARAMETER):
            self._flat[name] = self._array_value(name)

    def _array_value(self, name: str):
        try:
            return self.get_parameter(name).value
        except Exception:  # declared by type and never set
            return None

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        flat = dict(self._flat)
        for p in params:
            if p.name not in flat:
                continue
            flat[p.name] = p.value
        try:
            build_configs(flat)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        when = {"live": "applied now", "reset": "takes effect at the next ~/reset"}
        notes = [f"{p.name}: {when[change_kind(p.name)]}" for p in params if p.name in self._flat]
        # rclcpp returns this reason on success; rclpy drops it (the post-set callback logs
        # it, and ~/status lists pending_reset). Restart-only parameters are read-only.
        return SetParametersResult(successful=True, reason="; ".join(notes))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        changed = [p for p in params if p.name in self._flat]
        for p in changed:
            self._flat[p.name] = p.value
        if not changed:
            return
        self.config, _, bounds = build_configs(self._flat)
        self.engine.config = self.config
        self.engine.bounds_m = bounds
        names = {p.name for p in changed}
        self.pending_reset |= {n for n in names if change_kind(n) == "reset"}
        if "ros.extract_period_s" in names:
            self.engine.extract_period_s = float(self._flat["ros.extract_period_s"])
        if any(change_kind(n) == "live" and not n.startswith("ros.") for n in names):
            self.engine.apply_live(self.config)
        if names & self.pending_reset:
            self.get_logger().warning(f"{', '.join(sorted(names & self.pending_reset))} changed: "
                                      "takes effect at the next ~/reset")

    # ------------------------------------------------------------------ inputs
    def _setup_inputs(self) -> None:
        ros = self.ros
        # Best effort like qos_profile_sensor_data, but as deep as the synchroniser's queue:
        # its depth of 5 (170 ms at 30 Hz) lost frames while the trainer held the CPU.
        qos = QoSProfile(depth=ros.sync_queue_size,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if ros.image_qos == "sensor_data"
                                      else ReliabilityPolicy.RELIABLE))
        topics = {ros.color_topic: Image, ros.camera_info_topic: CameraInfo, ros.instance_topic: Image}
        self._roles = ["rgb", "info", "instance"]
        optional = []
        for role, name in (("depth", ros.depth_topic), ("semantic", ros.semantic_topic),
                           ("confidence", ros.confidence_topic)):
            if name:
                topics[name] = Image
                optional.append(name)
                self._roles.append(role)
        if len(topics) != len(self._roles):
            raise ConfigError("ros", f"input topics must be distinct, got {list(topics)}")
        self._input_topics = list(topics)
        self.sync = RosApproximateSync(self, topics, self._on_synced, qos=qos, optional=optional,
                                       queue_size=ros.sync_queue_size, slop_s=ros.sync_slop_s,
                                       callback_group=self._inputs_group,
                                       jump_back_s=TIME_JUMP_BACK_S)
        self.pose_source = ros.pose_source
        self.tf_buffer = None
        self.tf_unavailable_reason: str | None = None
        # sets of pose_source tf whose transform has not come yet (retried by _retry_tf)
        self.tf_waiting = PendingSets(pose_of=self._tf_pose, max_waiting=ros.sync_queue_size,
                                      wait_s=ros.tf_timeout_s)
        try:   # TF relates pose frames to the map and bodies to the camera (pose_frames)
            import tf2_ros
            self.tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)
            self.frames.lookup = TfLookup(self.tf_buffer)
            # Sets waiting for their TF pose are retried here, never in the input callback.
            self._tf_timer = self.create_timer(max(0.01, min(0.05, ros.tf_timeout_s / 2)), self._retry_tf,
                                               callback_group=MutuallyExclusiveCallbackGroup(),
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))
        except ImportError as exc:
            self.tf_unavailable_reason = str(exc)
            if ros.pose_source == "tf":
                self.pose_source = "pose_topic"
                self.get_logger().error(
                    f"ros.pose_source is 'tf' but tf2_ros is not importable ({exc}; the PyPI ROS "
                    f"wheels have no tf2_ros): falling back to PoseStamped poses on "
                    f"'{ros.pose_topic}'")
        if self.pose_source == "pose_topic":
            self.create_subscription(PoseStamped, ros.pose_topic, self._on_pose_stamped, 50,
                                     callback_group=self._inputs_group)
        elif self.pose_source == "odometry":
            self.create_subscription(Odometry, ros.odometry_topic, self._on_odometry, 50,
                                     callback_group=self._inputs_group)

    def _bad_input(self, counter: str, message: str) -> None:
        """Count a bad input and log it (one line per kind every LOG_THROTTLE_S)."""
        self.counters.inc(counter)
        self._warn(counter, f"{message} ({counter}: {self.counters[counter]} so far)")

    def _warn(self, kind: str, message: str) -> None:
        # One child logger per kind: rclpy throttles per logger and call site, so kinds
        # logged through this one line would otherwise silence each other.
        logger = self._loggers.get(kind)
        if logger is None:
            logger = self._loggers[kind] = self.get_logger().get_child(kind)
        logger.warning(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _engine_log(self, level: str, message: str) -> None:
        logger = self.get_logger().get_child("trainer")
        if level == "info":
            self.get_logger().info(message)
        elif level == "error":
            logger.error(message, throttle_duration_sec=LOG_THROTTLE_S)
        else:
            logger.warning(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _on_pose_stamped(self, msg) -> None:
        self._on_pose(msg.header, "", lambda: tfm.pose_stamped_to_matrix(msg))

    def _on_odometry(self, msg) -> None:
        self._on_pose(msg.header, msg.child_frame_id, lambda: tfm.odometry_to_matrix(msg))

    def _on_pose(self, header, child_frame_id: str, to_matrix: Callable[[], np.ndarray]) -> None:
        started = time.perf_counter()
        try:
            self._handle_pose(header, child_frame_id, to_matrix)
        finally:
            self.callback_times["pose"].add(time.perf_counter() - started)

    def _handle_pose(self, header, child_frame_id: str, to_matrix: Callable[[], np.ndarray]) -> None:
        stamp_ns = tfm.stamp_to_ns(header.stamp)
        try:
            T = self.frames.camera_in_map(check_pose(to_matrix()), header.frame_id, child_frame_id, stamp_ns)
        except PoseFrameError as exc:
            self._bad_input(exc.counter, f"camera pose dropped: {exc}")
            return
        except ValueError as exc:
            self._bad_input("bad_pose", f"camera pose dropped: {exc}")
            return
        with self._lock:
            newest = self.poses.newest_ns
            if newest is not None and newest - stamp_ns > TIME_JUMP_BACK_S * _NS:
                self.poses.clear()  # the pose stamps restarted (bag loop): old poses would mismatch
            self.poses.add(stamp_ns, T)
        self._resolve_pending()

    def _on_synced(self, *msgs) -> None:
        started = time.perf_counter()
        try:
            self._handle_set(msgs)
        finally:
            self.callback_times["synced"].add(time.perf_counter() - started)

    def _handle_set(self, msgs: Sequence) -> None:
        self.counters.inc("sets_received")
        stamp_ns = tfm.stamp_to_ns(msgs[0].header.stamp)
        jump_ns = int(TIME_JUMP_BACK_S * _NS)
        jumped = None
        with self._lock:
            last = self._last_set_ns
            if last is not None and stamp_ns <= last:
                if last - stamp_ns <= jump_ns:
                    self._bad_input("out_of_order", f"input set at {stamp_ns / _NS:.3f} s is not "
                                    f"newer than the last one ({last / _NS:.3f} s)")
                    return
                # A new timeline (a looping bag): what was kept of the old one is stale.
                # Poses up to TIME_JUMP_BACK_S ahead of this set may be the new timeline's.
                jumped = (last, self.pending.clear() + self.tf_waiting.clear(),
                          self.poses.drop_newer_than(stamp_ns + jump_ns))
            self._last_set_ns = stamp_ns
        if jumped is not None:
            self._time_jumped_back(stamp_ns, *jumped)
        self.frames.see_image_frame(msgs[0].header.frame_id)
        if self.pose_source == "tf":
            try:
                T = self._tf_pose(stamp_ns, msgs)
            except PoseFrameError:      # not there yet: the TF timer retries until ros.tf_timeout_s
                self.tf_waiting.add(stamp_ns, msgs)
                return
            self._convert_and_enqueue(msgs, T)
            return
        self.pending.add(stamp_ns, msgs)
        self._resolve_pending()

    def _time_jumped_back(self, stamp_ns: int, last_ns: int, pending: int, poses: int) -> None:
        """Input stamps went back more than TIME_JUMP_BACK_S: count it, clear the rest, say so."""
        self.counters.inc("time_jump_back")
        if self.sync.sync is None:
            # message_filters keeps the old timeline's messages queued. The built-in
            # synchroniser (jump_back_s) already reset itself at the new timeline's first
            # message; resetting again here would drop the next set's early messages.
            self.sync.reset()
        if self.tf_buffer is not None:
            try:
                self.tf_buffer.clear()
            except Exception:  # pragma: no cover - tf2_ros only
                pass
        self.get_logger().warning(
            f"time jumped back (bag loop?): input set at {stamp_ns / _NS:.3f} s after one at "
            f"{last_ns / _NS:.3f} s; cleared the synchroniser, {poses} poses and {pending} sets "
            f"waiting for a pose, and go on from the new stamps "
            f"(time_jump_back: {self.counters['time_jump_back']} so far)")

    def _tf_pose(self, stamp_ns: int, msgs: Sequence) -> np.ndarray:
        return self.frames.camera_from_tf(self.ros.camera_frame or msgs[0].header.frame_id, stamp_ns)

    def _retry_tf(self) -> None:
        """Sets waiting for their TF pose: enqueued once TF has it, dropped after ros.tf_timeout_s."""
        for stamp_ns, msgs, T in self.tf_waiting.resolve(expire=True):
            if T is None:
                self._bad_input("pose_unmatched", f"no TF pose of the set at {stamp_ns / _NS:.3f} s within "
                                f"ros.tf_timeout_s = {self.ros.tf_timeout_s} s (or more than "
                                f"{self.tf_waiting.max_waiting} sets waiting)")
            else:
                self._convert_and_enqueue(msgs, T)

    def _resolve_pending(self, *, expire: bool = False) -> None:
        """Sets waiting for a pose: matched once a pose at/after their stamp exists, dropped
        when no pose matches then, or after POSE_WAIT_S (``expire``) / queue overflow."""
        ready = self.pending.resolve(expire=expire)
        for stamp_ns, msgs, T in ready:
            if T is None:
                self._bad_input("pose_unmatched", f"no camera pose within "
                                f"{self.ros.sync_slop_s} s of the image at {stamp_ns / _NS:.3f} s")
                continue
            self._convert_and_enqueue(msgs, T)

    def _convert_and_enqueue(self, msgs: Sequence, T_world_cam: np.ndarray | None) -> None:
        if T_world_cam is None:
            return
        parts = dict(zip(self._roles, msgs))
        with self._lock:
            index = self._frame_index
            self._frame_index += 1
        try:
            frame, notes = frame_from_messages(
                parts["rgb"], parts["info"], parts["instance"], T_world_cam,
                depth_msg=parts.get("depth"), semantic_msg=parts.get("semantic"),
                confidence_msg=parts.get("confidence"),
                max_labels=self.config.model.num_channels - 1, num_classes=len(self.classes), index=index,
                expect_depth="depth" in parts)
        except InputError as exc:
            self._bad_input(exc.counter, f"input set dropped: {exc}")
            return
        if notes.labels_over_budget:
            self._bad_input("labels_over_budget", f"{notes.labels_over_budget} labels more than the "
                            f"{self.config.model.num_channels - 1} object channels: the smallest are "
                            "unknown to the losses (frame kept)")
        if notes.empty_labels:
            self._bad_input("empty_labels", "frame without instance labels (kept as an empty frame)")
        if notes.depth_missing:
            self._bad_input("depth_missing", "input set without depth (kept, RGB only)")
        self.engine.put(frame)

    # ------------------------------------------------------------------ outputs
    def publish_objects(self) -> None:
        """Publish ``/objects`` and the markers when the newest extraction changed what a
        planner sees (ids, geometry, class, confidence); both topics are latched, so a
        subscriber that comes later gets the last ones."""
        with self._publish_lock:       # the publish timer and the services both call this
            self._publish_latest()

    def _publish_latest(self) -> None:
        result = self.engine.latest_result
        if result is None or (self._published is not None and self._published[0] == result.seq):
            return
        signature = objects_signature(result)
        if self._published is not None and self._published[1] == signature:
            self._published = (result.seq, signature)
            return
        try:
            msg = objects_to_msg(result, self.classes, self.ros.map_frame)
            markers = objects_to_markers(msg)
        except Exception as exc:
            self.counters.inc("trainer_errors")
            self.get_logger().error(f"could not build the object messages: {exc}",
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return
        self.objects_pub.publish(msg)
        self.markers_pub.publish(markers)
        try:
            self.counters.inc("collision_operations", self.planner.publish(msg))
        except Exception as exc:
            self.counters.inc("trainer_errors")
            self.get_logger().error(f"could not publish the planner outputs: {exc}",
                                    throttle_duration_sec=LOG_THROTTLE_S)
        self._published = (result.seq, signature)
        self.counters.inc("objects_published")

    def restart_timeline(self) -> None:
        """Take the next input set whatever its stamp (after ``~/reset``)."""
        with self._lock:
            self._last_set_ns = None

    def status_values(self) -> dict[str, Any]:
        """Everything ``~/status`` reports, as a flat dictionary."""
        stats = self.engine.stats()
        sync = self.sync.sync.stats if self.sync.sync is not None else None
        if sync is not None:
            self.counters.set("sync_waiting", sync.total("dropped_overflow")
                              + sync.total("dropped_unmatched"))
            self.counters.set("sync_late", sync.total("dropped_late"))
        values: dict[str, Any] = {
            "state": stats["state"], "iteration": stats["iteration"],
            "it_per_s": round(stats["it_per_s"], 3), "frames_buffered": stats["views"],
            "frames_queued": self.engine.queue_length(), "pose_source": self.pose_source,
            "sets_waiting_for_tf": len(self.tf_waiting),
            "pending_reset": ",".join(sorted(self.pending_reset)),
        }
        if sync is not None:   # per input: what arrived, what made it into a set
            for topic, t in sync.per_topic.items():
                values[f"received {topic}"] = t.received
        values.update({f"loss.{k}": v for k, v in stats["losses"].items()})
        values.update(self.counters.snapshot())
        for path, times in self.callback_times.items():  # callback_synced_p99_ms, ...
            values.update({f"callback_{path}_{k}": v for k, v in times.summary().items()})
        autosave = stats.get("autosave") or {}
        values.update({f"autosave_{k}": v for k, v in autosave.items()})
        if self.map_services.initial_map_error:
            values["initial_map_error"] = self.map_services.initial_map_error
        values.update({f"{name}_error": why for name, why in self.planner.errors.items()})
        latest = self.engine.latest_result
        values["objects"] = 0 if latest is None else len(latest.objects)
        values["objects_iteration"] = -1 if latest is None else latest.iteration
        return values

    def _check_sync_health(self) -> None:
        if self.sync.sync is None:
            return
        stats, pending = self.sync.sync.stats, self.sync.sync.pending()
        required = self.sync.sync.required
        waiting = [t for t in required if pending.get(t, 0) > 0]
        starving = [t for t in required if stats.per_topic[t].received == 0]
        if waiting and starving:
            self._warn("inputs_starving", f"inputs wait for {', '.join(starving)}: nothing received "
                            f"there yet while {', '.join(waiting)} have messages queued "
                            "(is the topic right, and its QoS compatible?)")

    def _publish_status(self) -> None:
        self._resolve_pending(expire=True)
        self._check_sync_health()
        msg = status_to_diagnostics(f"{self.get_name()}: ClusteringSDF mapping",
                                    str(self.config.trainer.device), self.status_values())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the threads; save the map when ros.save_on_shutdown and there is a model."""
        if self._shut:
            return
        self._shut = True
        # Save first: saving runs on the trainer thread, which stop() ends.
        if self.ros.save_on_shutdown and self.engine.has_model:
            # After SIGTERM the context is shut down and rosout is gone: say it on stderr too.
            try:
                path = self.map_services.save_map()
                print(f"mapping_node: map saved to {path}", file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"mapping_node: could not save the map on shutdown: {exc!r}", file=sys.stderr,
                      flush=True)
        elif self.ros.save_on_shutdown:
            print("mapping_node: no model yet (too few frames): nothing to save", file=sys.stderr, flush=True)
        self.engine.stop()

    def destroy_node(self):
        self.shutdown()
        return super().destroy_node()


def _class_table(path: str) -> ClassTable:
    """``ros.class_table``: the table in that file, or the built-in one for ''."""
    if not path:
        return SCANNET_REDUCED
    try:
        return load_class_table(path)
    except ValueError as exc:
        raise ConfigError("ros.class_table", str(exc)) from None


def main(args=None) -> int:
    """Run the mapping node until Ctrl-C or SIGTERM; 0 on a clean stop, 1 on an error."""
    # Timers, services and inputs have their own callback groups: 4 threads keep the
    # timers and services from waiting for the image callbacks (and vice versa).
    return spin_node(MappingNode, "mapping_node", num_threads=4, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
