"""rosbag2 files without rosbag2: write a bag from a scene dataset, replay any bag.

Both use ``rosbags`` (pure Python; sqlite3 and mcap storage), with the type store
pinned to ROS 2 Kilted.

:func:`write_bag_from_dataset` records what a robot with an RGB-D camera and a 2D
segmenter would publish, one set of messages per frame, all stamped (header and
bag time) with the frame's time:

=========================== ======================== =====================================
topic (defaults)            type                     content
=========================== ======================== =====================================
/color/image_raw            sensor_msgs/Image        rgb8
/color/camera_info          sensor_msgs/CameraInfo   pinhole K/P, plumb_bob with D = 0
/depth/image_raw            sensor_msgs/Image        16UC1 millimetres, registered to colour
/segmentation/instance      sensor_msgs/Image        16UC1 machine instance ids (per view)
/segmentation/semantic      sensor_msgs/Image        16UC1 class ids (where frames have them)
/segmentation/confidence    sensor_msgs/Image        32FC1 in [0, 1] (where frames have them)
/camera/pose                geometry_msgs/PoseStamped  optical frame in ``map``
/tf                         tf2_msgs/TFMessage       map -> camera_link
/tf_static                  tf2_msgs/TFMessage       camera_link -> camera_color_optical_frame
=========================== ======================== =====================================

Frames (REP 103/105): ``map`` is the fixed z-up world; ``camera_link`` is the
camera body (x forward, y left, z up) and ``camera_color_optical_frame`` the
optical frame (x right, y down, z forward) that image headers name, joined by the
constant optical rotation, as camera drivers publish it. TF therefore gives
map -> camera_color_optical_frame = the frame's ``T_world_cam``; so does
``/camera/pose`` directly. Depth is registered to the colour camera, so it
shares the colour optical frame. ``body_frame=""`` writes map -> optical frame
directly on ``/tf`` and no ``/tf_static``.

:class:`BagPlayer` republishes the raw CDR bytes of any bag into rclpy publishers
(no deserialisation) at the recorded timing, with rate, loop, start offset, topic
remapping and a topic whitelist.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_ros import conversions as conv
from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.params import RosConfig

__all__ = ["BagTopics", "BagWriteSummary", "write_bag_from_dataset", "BagError", "BagPlayer",
           "PlaybackStats", "parse_remap", "bag_info", "MAP_FRAME", "BODY_FRAME", "OPTICAL_FRAME",
           "T_BODY_OPTICAL", "DEFAULT_BASE_TIME_NS"]

log = logging.getLogger(__name__)

_NS = 1_000_000_000
MAP_FRAME = "map"
BODY_FRAME = "camera_link"
OPTICAL_FRAME = "camera_color_optical_frame"
#: Pose of an optical frame (x right, y down, z forward) in its body frame (x forward, z up).
T_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0],
                           [-1.0, 0.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 1.0]])
#: Bag time of the first frame unless told otherwise (2023-11-14T22:13:20Z): fixed, so
#: the same dataset always gives the same bag.
DEFAULT_BASE_TIME_NS = 1_700_000_000 * _NS


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def parse_wait_for_topics(entries: Iterable[str]) -> dict[str, int]:
    """``wait_for_topics`` entries, ``'topic'`` or ``'topic:N'`` (at least N subscribers;
    a ROS name has no ':'), as {absolute topic: N}. ValueError for a bad count."""
    counts: dict[str, int] = {}
    for entry in entries:
        topic, sep, count = str(entry).partition(":")
        try:
            n = int(count) if sep else 1
        except ValueError:
            n = 0
        if not topic or n < 1:
            raise ValueError(f"wait_for_topics entry {entry!r}: expected 'topic' or 'topic:N' with N >= 1")
        counts[_absolute(topic)] = n
    return counts


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class BagTopics:
    """Topic names written to a bag (absolute; a bag is recorded from the root namespace)."""

    color: str = "/color/image_raw"
    camera_info: str = "/color/camera_info"
    depth: str = "/depth/image_raw"
    instance: str = "/segmentation/instance"
    semantic: str = "/segmentation/semantic"
    confidence: str = "/segmentation/confidence"
    pose: str = "/camera/pose"
    tf: str = "/tf"
    tf_static: str = "/tf_static"

    @classmethod
    def from_ros_config(cls, ros: RosConfig) -> "BagTopics":
        """The mapping node's input topics (``''`` semantic/confidence keep the defaults here)."""
        d = cls()
        return cls(color=_absolute(ros.color_topic), camera_info=_absolute(ros.camera_info_topic),
                   depth=_absolute(ros.depth_topic) if ros.depth_topic else d.depth,
                   instance=_absolute(ros.instance_topic),
                   semantic=_absolute(ros.semantic_topic) if ros.semantic_topic else d.semantic,
                   confidence=(_absolute(ros.confidence_topic) if ros.confidence_topic
                               else d.confidence),
                   pose=_absolute(ros.pose_topic))


@dataclass
class BagWriteSummary:
    """What :func:`write_bag_from_dataset` wrote."""

    path: Path
    storage: str
    frames: int
    start_ns: int
    end_ns: int
    messages: dict[str, int] = field(default_factory=dict)   # topic -> count


def _frame_times_ns(frames: Sequence[Frame], *, rate: float, frame_rate_hz: float | None,
                    base_time_ns: int) -> list[int]:
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if frame_rate_hz is not None:
        if not frame_rate_hz > 0:
            raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
        rel = [i / frame_rate_hz for i in range(len(frames))]
    else:
        stamps = [float(f.stamp_s) for f in frames]
        if any(b <= a for a, b in zip(stamps, stamps[1:])):
            raise ValueError("frame stamps (stamp_s) are not strictly increasing; pass "
                             "frame_rate_hz to space the frames evenly")
        rel = [s - stamps[0] for s in stamps]
    return [int(base_time_ns) + int(round(r / rate * _NS)) for r in rel]


def write_bag_from_dataset(dataset: SceneDataset, out_path: str | Path, *, storage: str = "mcap",
                           topics: BagTopics | None = None, include_depth: bool = True,
                           include_labels: bool = True, include_semantic: bool = True,
                           include_confidence: bool = True, include_test: bool = False,
                           rate: float = 1.0, frame_rate_hz: float | None = None,
                           base_time_ns: int = DEFAULT_BASE_TIME_NS, map_frame: str = MAP_FRAME,
                           camera_frame: str = OPTICAL_FRAME,
                           body_frame: str = BODY_FRAME) -> BagWriteSummary:
    """Write the frames of ``dataset`` as a rosbag2 folder ``out_path`` (must not exist).

    - ``storage``: ``"mcap"`` or ``"sqlite3"``.
    - Training frames only, unless ``include_test`` (then all frames, in stamp order).
    - Times: the first frame at ``base_time_ns``, then the frames' ``stamp_s``
      divided by ``rate`` (2.0 = twice as fast), or evenly at ``frame_rate_hz``.
    - Depth and machine instance labels are written when included (a frame missing
      them is an error); semantic ids and confidence wherever frames have them.
    """
    from rclpy.serialization import serialize_message
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    out_path = Path(out_path)
    if out_path.exists():
        raise FileExistsError(f"{out_path} exists; a bag is written to a new folder")
    topics = topics or BagTopics()
    frames = list(dataset.train)
    if include_test:
        frames = sorted(frames + list(dataset.test), key=lambda f: f.stamp_s)
    if not frames:
        raise ValueError(f"dataset {dataset.name!r} has no frames to write")
    times = _frame_times_ns(frames, rate=rate, frame_rate_hz=frame_rate_hz,
                            base_time_ns=base_time_ns)
    for frame in frames:
        if include_depth and frame.depth_m is None:
            raise ValueError(f"frame {frame.index} has no depth (pass include_depth=False)")
        if include_labels and frame.instance is None:
            raise ValueError(f"frame {frame.index} has no machine instance labels: write the bag "
                             "without them (include_labels=False; `clusteringsdf bag from-dataset "
                             "--no-labels`) and replay it with the segmenter node (--use-segmenter), or "
                             "add labels with the segmenter simulation")

    ts = _typestore()
    TFMessage = ts.types["tf2_msgs/msg/TFMessage"]

    def to_rosbags_transform(msg):
        return ts.deserialize_cdr(serialize_message(msg), "geometry_msgs/msg/TransformStamped")

    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                  QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    counts: dict[str, int] = {}
    with Writer(out_path, version=9, storage_plugin=plugins[storage]) as writer:
        connections = {}

        def write(topic: str, msgtype: str, t_ns: int, raw: bytes, qos=None) -> None:
            if topic not in connections:
                connections[topic] = writer.add_connection(
                    topic, msgtype, typestore=ts, offered_qos_profiles=[qos] if qos else ())
            writer.write(connections[topic], t_ns, raw)
            counts[topic] = counts.get(topic, 0) + 1

        def write_ros(topic: str, msgtype: str, t_ns: int, msg) -> None:
            write(topic, msgtype, t_ns, serialize_message(msg))

        image = "sensor_msgs/msg/Image"
        if body_frame:
            static = tfm.matrix_to_transform_stamped(T_BODY_OPTICAL, frame_id=body_frame,
                                                      child_frame_id=camera_frame,
                                                      stamp_ns=times[0])
            write(topics.tf_static, "tf2_msgs/msg/TFMessage", times[0],
                  ts.serialize_cdr(TFMessage(transforms=[to_rosbags_transform(static)]),
                                   "tf2_msgs/msg/TFMessage"), latched)
        for frame, t in zip(frames, times):
            T_map_optical = frame.T_world_cam
            if body_frame:
                tf = tfm.matrix_to_transform_stamped(
                    T_map_optical @ np.linalg.inv(T_BODY_OPTICAL), frame_id=map_frame,
                    child_frame_id=body_frame, stamp_ns=t)
            else:
                tf = tfm.matrix_to_transform_stamped(T_map_optical, frame_id=map_frame,
                                                      child_frame_id=camera_frame, stamp_ns=t)
            write(topics.tf, "tf2_msgs/msg/TFMessage", t,
                  ts.serialize_cdr(TFMessage(transforms=[to_rosbags_transform(tf)]),
                                   "tf2_msgs/msg/TFMessage"))
            write_ros(topics.pose, "geometry_msgs/msg/PoseStamped", t,
                      tfm.matrix_to_pose_stamped(T_map_optical, frame_id=map_frame, stamp_ns=t))
            write_ros(topics.camera_info, "sensor_msgs/msg/CameraInfo", t,
                      conv.intrinsics_to_camera_info(frame.intrinsics, stamp_ns=t,
                                                     frame_id=camera_frame))
            write_ros(topics.color, image, t,
                      conv.rgb_to_image(frame.rgb, stamp_ns=t, frame_id=camera_frame))
            if include_depth:
                write_ros(topics.depth, image, t,
                          conv.depth_to_image(frame.depth_m, stamp_ns=t, frame_id=camera_frame))
            if include_labels:
                write_ros(topics.instance, image, t,
                          conv.labels_to_image(frame.instance, stamp_ns=t, frame_id=camera_frame))
            if include_semantic and frame.semantic is not None:
                write_ros(topics.semantic, image, t,
                          conv.labels_to_image(frame.semantic, stamp_ns=t, frame_id=camera_frame))
            if include_confidence and frame.confidence is not None:
                write_ros(topics.confidence, image, t,
                          conv.confidence_to_image(frame.confidence, stamp_ns=t,
                                                   frame_id=camera_frame))
    return BagWriteSummary(path=out_path, storage=storage, frames=len(frames), start_ns=times[0],
                           end_ns=times[-1], messages=counts)


# --------------------------------------------------------------------------- playing


def _storage_identifier(path: Path) -> str:
    import yaml

    meta = yaml.safe_load((path / "metadata.yaml").read_text()) or {}
    return str(meta.get("rosbag2_bagfile_information", {}).get("storage_identifier", "?"))


def bag_info(bag_path: str | Path) -> dict:
    """Storage, duration and per-topic type and message count of a rosbag2 folder."""
    from rosbags.rosbag2 import Reader

    path = Path(bag_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    try:
        with Reader(path) as reader:
            topics = [{"name": name, "type": t.msgtype, "count": t.msgcount}
                      for name, t in sorted(reader.topics.items())]
            storage = _storage_identifier(path)
            return {"path": str(path), "storage": storage, "messages": reader.message_count,
                    "duration_s": reader.duration / _NS if reader.message_count else 0.0,
                    "start_ns": reader.start_time, "end_ns": reader.end_time, "topics": topics}
    except Exception as exc:  # rosbags, sqlite3 and mcap raise various types
        raise BagError(f"cannot read bag {path} (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc


class BagError(RuntimeError):
    """A bag that cannot be read (missing, truncated, corrupt)."""


@dataclass
class PlaybackStats:
    """What a :class:`BagPlayer` did."""

    published: dict[str, int] = field(default_factory=dict)   # output topic -> messages
    skipped_topics: dict[str, str] = field(default_factory=dict)  # bag topic -> why
    loops_completed: int = 0
    max_lateness_s: float = 0.0       # largest (publish time - scheduled time)
    stopped: bool = False


def parse_remap(rules: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``['/a:=/b', ...]`` (or a dict) -> {'/a': '/b'}; names made absolute."""
    if rules is None:
        return {}
    if isinstance(rules, Mapping):
        pairs = list(rules.items())
    else:
        pairs = []
        for rule in rules:
            if not rule:
                continue
            src, sep, dst = str(rule).partition(":=")
            if not sep or not src or not dst:
                raise ValueError(f"remap rule {rule!r} is not of the form 'from:=to'")
            pairs.append((src, dst))
    return {_absolute(s.strip()): _absolute(d.strip()) for s, d in pairs}


def _import_message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name' (ImportError/AttributeError if missing)."""
    package, kind, name = msgtype.split("/")
    module = importlib.import_module(f"{package}.{kind}")
    return getattr(module, name)


class BagPlayer:
    """Republishes a rosbag2 (sqlite3 or mcap) into publishers of ``node`` at recorded timing.

    - Message ``t`` goes out at ``(t - bag start - start_offset) / rate`` after
      :meth:`play` starts (the schedule is anchored there: a late message does not
      delay the next ones).
    - ``rate``: speed factor (2.0 = twice as fast); ``loop``: start again at the end
      until :meth:`stop`; ``start_offset_s``: skip that much of the bag's beginning.
    - ``remap``: {bag topic: published topic} or ['from:=to', ...];
      ``topics``: only these bag topics (None = all).
    - ``node`` needs ``create_publisher(msg_class, topic, qos)`` returning an object
      with ``publish(bytes)`` (rclpy's publishers accept serialised messages).
      Topics whose message type rclpy cannot import are skipped, one warning each.
    - ``qos``: the publishers' QoS (default: reliable, keep last 100; topics
      recorded as transient-local, like ``/tf_static``, keep that durability).
    - ``publish_clock``: publish ``/clock`` (rosgraph_msgs/Clock) with each message's
      recorded time before the message, so nodes with ``use_sim_time`` stamp their
      outputs in the bag's time base (as ``ros2 bag play --clock``).
    - ``wait_for_subscribers_s``: before playing, wait up to that long for a subscriber
      on any of the topics, then at most one more second for every topic to have one
      (DDS discovery takes a moment; a consumer may not want every topic);
      ``wait_for_topics``: output topics that must each have a subscriber first (within
      the same time), e.g. the mapping node's pose topic when a faster-starting segmenter
      node subscribes to the images; ``'topic:N'`` asks for at least N (the colour
      images of a replay that feeds both a segmenter and the mapping node).
    Raises :class:`BagError` when the bag cannot be opened or read.
    """

    def __init__(self, bag_path: str | Path, node, *, rate: float = 1.0, loop: bool = False,
                 start_offset_s: float = 0.0,
                 remap: Mapping[str, str] | Iterable[str] | None = None,
                 topics: Sequence[str] | None = None, qos=None,
                 wait_for_subscribers_s: float = 0.0, wait_for_topics: Sequence[str] = (),
                 publish_clock: bool = False, clock: Callable[[], float] = time.monotonic,
                 logger: Callable[[str], None] | None = None):
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not start_offset_s >= 0:
            raise ValueError(f"start_offset_s must be >= 0, got {start_offset_s}")
        self.bag_path = Path(bag_path)
        self.rate, self.loop = float(rate), bool(loop)
        self.start_offset_ns = int(round(start_offset_s * _NS))
        self.wait_for_subscribers_s = float(wait_for_subscribers_s)
        self.wait_for_topics = parse_wait_for_topics(wait_for_topics)
        self._clock = clock
        self._warn = logger or log.warning
        self._stop = threading.Event()
        self.stats = PlaybackStats()
        remap = parse_remap(remap)
        self._reader = self._open()
        self._clock_pub = None
        self._clock_ns = None          # the last /clock published
        try:
            self._setup(node, remap, topics, qos)
            if publish_clock:
                from rclpy.qos import QoSProfile, ReliabilityPolicy
                from rosgraph_msgs.msg import Clock

                self._clock_pub = node.create_publisher(
                    Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
                self._clock_msg = Clock()
        except BaseException:
            self._reader.close()
            raise

    def _open(self):
        from rosbags.rosbag2 import Reader

        if not self.bag_path.exists():
            raise BagError(f"bag {self.bag_path} does not exist")
        try:
            reader = Reader(self.bag_path)
            reader.open()
        except Exception as exc:  # rosbags, sqlite3 and mcap raise various types
            raise BagError(f"cannot open bag {self.bag_path} (truncated or corrupt?): "
                           f"{type(exc).__name__}: {exc}") from exc
        return reader

    def _setup(self, node, remap: dict[str, str], topics: Sequence[str] | None, qos) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        available = sorted({c.topic for c in self._reader.connections})
        wanted = None if topics is None else {_absolute(t) for t in topics}
        if wanted is not None and not wanted & set(available):
            raise ValueError(f"none of the topics {sorted(wanted)} is in {self.bag_path}; "
                             f"it has {available}")
        self._publishers = {}      # connection id -> (output topic, publisher)
        self._connections = []
        classes: dict[str, tuple[type | None, str]] = {}
        for conn in self._reader.connections:
            if wanted is not None and conn.topic not in wanted:
                continue
            if conn.msgtype not in classes:
                try:
                    classes[conn.msgtype] = (_import_message_class(conn.msgtype), "")
                except (ImportError, AttributeError, ValueError) as exc:
                    classes[conn.msgtype] = (None, f"message type {conn.msgtype} is not "
                                                   f"importable here ({exc})")
            msg_class, reason = classes[conn.msgtype]
            if msg_class is None:
                if conn.topic not in self.stats.skipped_topics:
                    self.stats.skipped_topics[conn.topic] = reason
                    self._warn(f"bag player: skipping {conn.topic}: {reason}")
                continue
            out_topic = remap.get(conn.topic, conn.topic)
            profile = qos
            if profile is None:
                latched = any(getattr(q, "durability", None) is not None
                              and getattr(q.durability, "name", "") == "TRANSIENT_LOCAL"
                              for q in getattr(conn.ext, "offered_qos_profiles", ()) or ())
                profile = QoSProfile(
                    history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                else DurabilityPolicy.VOLATILE))
            publisher = node.create_publisher(msg_class, out_topic, profile)
            self._publishers[conn.id] = (out_topic, publisher)
            self._connections.append(conn)

    @property
    def output_topics(self) -> list[str]:
        return sorted({topic for topic, _ in self._publishers.values()})

    def stop(self) -> None:
        """Make :meth:`play` return soon (from another thread)."""
        self._stop.set()

    def close(self) -> None:
        self._reader.close()

    def _wait_for_subscribers(self) -> None:
        # Until a consumer shows up on any topic (it may not subscribe to every bag topic),
        # then up to one more second for its other subscriptions to be discovered.
        deadline = self._clock() + self.wait_for_subscribers_s
        settle_until = None
        required = [(p, self.wait_for_topics[topic]) for topic, p in self._publishers.values()
                    if topic in self.wait_for_topics]
        while self._clock() < deadline and not self._stop.is_set():
            if any(p.get_subscription_count() < n for p, n in required):
                self._stop.wait(0.01)
                continue
            counts = [p.get_subscription_count() for _, p in self._publishers.values()]
            if all(c > 0 for c in counts):
                return
            if settle_until is None and any(c > 0 for c in counts):
                settle_until = self._clock() + 1.0
            if settle_until is not None and self._clock() >= settle_until:
                return
            self._stop.wait(0.01)

    def play(self) -> PlaybackStats:
        """Publish the bag (blocking) until its end, or :meth:`stop` when looping."""
        if not self._connections:
            return self.stats
        if self.wait_for_subscribers_s > 0:
            self._wait_for_subscribers()
        start_ns = self._reader.start_time + self.start_offset_ns
        while not self._stop.is_set():
            self._play_once(start_ns)
            if self._stop.is_set():
                break
            self.stats.loops_completed += 1
            if not self.loop:
                break
        self.stats.stopped = self._stop.is_set()
        return self.stats

    def _publish_clock(self, t_ns: int) -> None:
        from rclpy.serialization import serialize_message

        msg = self._clock_msg      # serialised like the bag's messages: the publishers take bytes
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), _NS)
        self._clock_pub.publish(serialize_message(msg))
        self._clock_ns = t_ns
        self.stats.published["/clock"] = self.stats.published.get("/clock", 0) + 1

    def _play_once(self, start_ns: int) -> None:
        wall_start = self._clock()
        published = self.stats.published
        messages = self._reader.messages(connections=self._connections, start=start_ns)
        while True:
            try:
                conn, t_ns, raw = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # storage errors surface while iterating
                raise BagError(f"cannot read bag {self.bag_path} (truncated or corrupt?): "
                               f"{type(exc).__name__}: {exc}") from exc
            scheduled = wall_start + (t_ns - start_ns) / _NS / self.rate
            delay = scheduled - self._clock()
            if (delay > 0 and self._stop.wait(delay)) or self._stop.is_set():
                messages.close()
                return
            topic, publisher = self._publishers[conn.id]
            if self._clock_pub is not None and t_ns != self._clock_ns:
                self._publish_clock(t_ns)
            publisher.publish(bytes(raw))
            published[topic] = published.get(topic, 0) + 1
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, self._clock() - scheduled)
