"""The ``segmenter_node``: RGB (+ depth) in, per-view instance ids (+ classes) out.

It feeds the mapping node's ``segmentation/*`` inputs on robots that run no 2D
segmenter of their own. Thin glue over :mod:`clusteringsdf_core.segment.backends`:

- **backends** (``backend``): ``detector`` (default; COCO boxes of SSD MobileNet v2
  made into masks with the classical segments and depth, parameters
  ``detector_segmenter.*``; gives classes and confidence), ``classical`` (Felzenszwalb
  or SLIC with depth-aware clean-up, parameters ``classical_segmenter.*``, which the
  detector uses too), ``torchscript``, ``onnx`` (OpenCV) or ``onnxruntime`` (ONNX
  Runtime; a learned model in ``model_path``; the input/output contract is in
  :mod:`clusteringsdf_core.segment.backends` and the README).
- **inputs**: ``color/image_raw`` (rgb8, bgr8, rgba8, bgra8, mono8) and, with
  ``use_depth``, ``depth/image_raw`` (16UC1 in ``depth_unit_m``, or 32FC1 metres),
  paired by stamp within ``sync_slop_s``. A colour image whose depth has not come
  goes out without it once the colour stream is ``depth_wait_s`` (stamps) past it;
  learned models ignore depth. QoS ``image_qos`` (sensor data or reliable).
- **outputs**, each with the colour image's header (same stamp and frame_id, so the
  mapping node's approximate-time synchroniser pairs them exactly), reliable, depth 5
  (which best-effort subscribers accept too): ``segmentation/instance`` (16UC1, or
  32SC1 when an id exceeds 65535; 0 = no segment; ids are per view), and for a model
  that gives them ``segmentation/semantic`` (class ids, same encodings) and
  ``segmentation/confidence`` (32FC1 in [0, 1]) unless ``publish_semantic`` /
  ``publish_confidence`` is false.
- **processing**: the subscription callback only checks the encoding and puts the
  messages into a queue of ``queue_size`` frames; a worker thread decodes, segments and
  publishes, oldest first. A frame that arrives while the queue is full drops the oldest
  waiting one (counted: with the default of 1 the output follows the newest image; a
  replay keeps more, so a slow moment of the segmenter loses no frame of the bag).
  Until a subscription to ``segmentation/instance`` is matched, nothing is segmented:
  the frames wait in the queue, and the first consumer gets them.
  ``max_rate_hz`` > 0 skips frames beyond that rate (node clock, so sim time under
  ``use_sim_time``). Bad input is counted and logged once per kind every
  :data:`LOG_THROTTLE_S` seconds; nothing stops the node.
- **status**: ``~/status`` (``diagnostic_msgs/DiagnosticArray``) every
  ``status_period_s`` of steady time (so it goes on when a bag's sim time stops): the
  counters of :data:`COUNTERS`, ``ms_per_frame`` (mean of the last
  :data:`TIMING_WINDOW` frames: decode + segment + publish), ``ms_last``,
  ``segments_last`` and the backend.
- **parameters** are read-only (a change needs a restart) and described:
  :class:`SegmenterRosConfig` and :class:`~clusteringsdf_core.segment.backends.LearnedSegmenterConfig`
  at the top level, :class:`~clusteringsdf_core.segment.classical.ClassicalSegmenterConfig`
  under ``classical_segmenter.``, :class:`~clusteringsdf_core.segment.detector.DetectorSegmenterConfig`
  under ``detector_segmenter.``. A bad value or a missing model file stops the node
  at start with a message naming the parameter.

    python -m clusteringsdf_ros.segmenter_node --ros-args -p backend:=torchscript -p model_path:=/models/seg.pt
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from clusteringsdf_core.config import Section, build_section, param
from clusteringsdf_core.segment.backends import (BACKENDS, LearnedSegmenterConfig, SegmenterBackend,
                                                 Segmentation, make_segmenter)
from clusteringsdf_core.segment.classical import ClassicalSegmenterConfig
from clusteringsdf_core.segment.detector import DetectorSegmenterConfig
from clusteringsdf_ros.descriptors import declare, parameter_descriptor
from clusteringsdf_ros import conversions as conv
from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.node_main import spin_node
from clusteringsdf_ros.sync import RosApproximateSync

__all__ = ["SegmenterNode", "SegmenterRosConfig", "NewestQueue", "RateGate", "COUNTERS",
           "TOPICS", "main"]

#: Seconds between two log lines of one kind of bad input.
LOG_THROTTLE_S = 5.0
#: Frames averaged into ``ms_per_frame``.
TIMING_WINDOW = 50
#: Topic names (relative, remap with ``-r``).
TOPICS = {
    "color": "color/image_raw",
    "depth": "depth/image_raw",
    "instance": "segmentation/instance",
    "semantic": "segmentation/semantic",
    "confidence": "segmentation/confidence",
}
#: Prefix of the classical segmenter's parameters (the core section's name).
CLASSICAL_PREFIX = f"{ClassicalSegmenterConfig.name}."
#: Prefix of the detector backend's parameters.
DETECTOR_PREFIX = f"{DetectorSegmenterConfig.name}."

#: Every counter of the status, with what it counts.
COUNTERS: dict[str, str] = {
    "frames_in": "colour images received (with their depth when use_depth)",
    "frames_out": "segmentations published",
    "dropped_busy": "frames dropped unsegmented: queue_size frames waited already while the "
                    "segmenter was busy (the oldest goes)",
    "dropped_unsubscribed": "frames dropped unsegmented while nothing subscribed to "
                            "segmentation/instance (queue_size frames wait for the first subscriber)",
    "skipped_rate": "frames skipped to stay under max_rate_hz",
    "bad_encoding": "images with an encoding that input does not accept",
    "bad_image": "images whose layout (step, size) is broken",
    "size_mismatch": "depth images of another size than their colour image (segmented without)",
    "depth_missing": "frames segmented without depth although use_depth is set",
    "segmenter_errors": "frames the backend failed on (e.g. model outputs outside the contract)",
    "sync_late": "images older than what their topic already contributed (colour/depth pairing)",
    "sync_waiting": "images that waited for their colour/depth partner and never got one",
}

_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_UINT16_MAX = 65535


@dataclass(frozen=True)
class SegmenterRosConfig(Section):
    """The node's own parameters (top level, next to the learned model's)."""

    name: ClassVar[str] = ""

    backend: str = param("detector", "detector (COCO boxes of SSD MobileNet v2 made into masks with the "
                         "classical segments and depth; parameters detector_segmenter.* and "
                         "classical_segmenter.*; classes and confidence), classical (Felzenszwalb/SLIC, "
                         "parameters classical_segmenter.*), torchscript, onnx (OpenCV) or onnxruntime (ONNX "
                         "Runtime): a model in model_path",
                         choices=BACKENDS)
    use_depth: bool = param(True, "subscribe to depth/image_raw and pair it with the colour "
                            "image by stamp (the classical backend uses it; models ignore it)")
    depth_unit_m: float = param(0.001, "metres per unit of 16UC1 depth", min=0.0,
                                min_exclusive=True)
    sync_slop_s: float = param(0.02, "largest stamp difference of a colour/depth pair, seconds",
                               min=0.0)
    depth_wait_s: float = param(0.5, "a colour image goes out without depth once colour stamps "
                                "are this far past it (and none matched), seconds", min=0.0)
    image_qos: str = param("sensor_data", "QoS of the image subscriptions",
                           choices=("sensor_data", "reliable"))
    max_rate_hz: float = param(0.0, "segment at most this many frames per second of the node "
                               "clock (0 = every frame the segmenter can keep up with)", min=0.0)
    publish_semantic: bool = param(True, "publish segmentation/semantic when the model gives "
                                   "classes")
    publish_confidence: bool = param(True, "publish segmentation/confidence when the model "
                                     "gives it")
    queue_size: int = param(1, "frames that may wait while the segmenter is busy; one more drops the "
                            "oldest waiting (counted in dropped_busy). 1 = always segment the newest "
                            "image (live cameras); a bag replay that wants every frame uses more",
                            min=1)
    status_period_s: float = param(1.0, "seconds between ~/status messages", min=0.0,
                                   min_exclusive=True)


# =========================================================================== helpers


class NewestQueue:
    """A bounded mailbox between a callback and a worker: :meth:`put` appends, and when
    ``capacity`` items already wait it drops the oldest (the worker stays at most
    ``capacity`` frames behind the newest); :meth:`take` waits for the oldest left."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._cond = threading.Condition()
        self._items: collections.deque = collections.deque(maxlen=capacity)
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when that dropped one the worker had not taken."""
        with self._cond:
            dropped = len(self._items) == self._items.maxlen
            self._items.append(item)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Any:
        """The oldest waiting item (removed), or None after ``timeout`` seconds or
        :meth:`close`."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Wake every :meth:`take`; later takes return what is left, then None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class RateGate:
    """Lets at most ``max_rate_hz`` events per second through (0 = all).

    :meth:`accept` takes the time in integer nanoseconds. Accepted times follow a grid
    of one period, so jitter in a faster stream does not lower the rate; an event more
    than a period late, or a clock that jumped back (a looping bag under sim time),
    restarts the grid.
    """

    def __init__(self, max_rate_hz: float):
        self.period_ns = int(round(1e9 / max_rate_hz)) if max_rate_hz > 0 else 0
        self._next: int | None = None

    def accept(self, now_ns: int) -> bool:
        if not self.period_ns:
            return True
        nxt, period = self._next, self.period_ns
        if nxt is not None and nxt - period <= now_ns < nxt:
            return False
        on_grid = nxt is not None and nxt <= now_ns < nxt + period
        self._next = nxt + period if on_grid else now_ns + period
        return True


class _Counters:
    """Named counters, safe to bump from the callback and worker threads."""

    def __init__(self, names: Sequence[str]):
        self._lock = threading.Lock()
        self._values = {name: 0 for name in names}

    def inc(self, name: str, n: int = 1) -> int:
        with self._lock:
            self._values[name] += int(n)
            return self._values[name]

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._values[name] = int(value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _label_image(labels: np.ndarray, stamp_ns: int, frame_id: str):
    """16UC1 labels, 32SC1 when an id does not fit 16 bits."""
    encoding = "16UC1" if labels.size == 0 or int(labels.max()) <= _UINT16_MAX else "32SC1"
    return conv.labels_to_image(labels, encoding, stamp_ns=stamp_ns, frame_id=frame_id)


def _plain(value: Any) -> Any:
    """Parameter values as the config sections want them (arrays -> lists, unset -> [])."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return [int(v) if isinstance(v, (int, np.integer)) else v for v in value]
    return value


# =========================================================================== the node


class SegmenterNode(Node):
    """The segmenter node (see the module docstring).

    ``backend`` replaces the one the parameters describe (tests inject one); other
    ``**kwargs`` go to ``rclpy.node.Node`` (``context``, ``namespace``,
    ``parameter_overrides``, ...). Raises ConfigError / FileNotFoundError / ValueError
    naming the parameter when the parameters cannot make a segmenter.
    """

    def __init__(self, *, backend: SegmenterBackend | None = None, **kwargs):
        super().__init__("segmenter_node", **kwargs)
        self._declare_parameters()
        self.ros, learned, classical, detector = self._read_configs()
        if backend is None:
            if self.ros.backend == "detector":
                backend = make_segmenter("detector", **dataclasses.asdict(detector), classical=classical)
            else:
                settings = classical if self.ros.backend == "classical" else learned
                backend = make_segmenter(self.ros.backend, **dataclasses.asdict(settings))
        self.backend = backend
        self.counters = _Counters(COUNTERS)
        self._loggers: dict[str, Any] = {}
        self._timing_ms: collections.deque = collections.deque(maxlen=TIMING_WINDOW)
        self._last: dict[str, Any] = {"ms_last": 0.0, "segments_last": 0}
        self._slot = NewestQueue(self.ros.queue_size)
        self._gate = RateGate(self.ros.max_rate_hz)
        self._stop = threading.Event()

        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._timers_group = MutuallyExclusiveCallbackGroup()
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.instance_pub = self.create_publisher(Image, TOPICS["instance"], out_qos)
        gives = self.backend.may_give_semantic
        self.semantic_pub = (self.create_publisher(Image, TOPICS["semantic"], out_qos)
                             if gives and self.ros.publish_semantic else None)
        self.confidence_pub = (self.create_publisher(Image, TOPICS["confidence"], out_qos)
                               if gives and self.ros.publish_confidence else None)
        self.status_pub = self.create_publisher(DiagnosticArray, "~/status", 10)
        self._setup_inputs()
        # Steady time: under use_sim_time the bag's /clock stops at its end, and a timer on
        # the node clock would stop reporting with it.
        self._status_timer = self.create_timer(self.ros.status_period_s, self._publish_status,
                                               callback_group=self._timers_group,
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name="segmenter", daemon=True)
        self._worker.start()
        inputs = self._color_topic + (f" + {self._depth_topic}" if self._depth_topic else "")
        outputs = [p.topic_name for p in (self.instance_pub, self.semantic_pub,
                                          self.confidence_pub) if p is not None]
        self.get_logger().info(f"segmenting {inputs} with {self.backend.describe()} -> "
                               f"{', '.join(outputs)}")

    # ------------------------------------------------------------------ parameters
    def _sections(self):
        return (("", SegmenterRosConfig), ("", LearnedSegmenterConfig),
                (CLASSICAL_PREFIX, ClassicalSegmenterConfig), (DETECTOR_PREFIX, DetectorSegmenterConfig))

    def _declare_parameters(self) -> None:
        self._values: dict[str, Any] = {}  # read-only: the declared values are final
        for prefix, section in self._sections():
            defaults = dataclasses.asdict(section())
            for f in dataclasses.fields(section):
                value = defaults[f.name]
                descriptor = parameter_descriptor(f.metadata, value, read_only=True)
                if isinstance(value, list) and not value:
                    # An empty list would be typed BYTE_ARRAY: declare the array by type.
                    value = Parameter.Type.INTEGER_ARRAY
                # (an array declared by type and never set has the value None)
                self._values[prefix + f.name] = declare(self, prefix + f.name, value, descriptor).value

    def _read_configs(self) -> tuple[SegmenterRosConfig, LearnedSegmenterConfig,
                                     ClassicalSegmenterConfig, DetectorSegmenterConfig]:
        """The four sections from the parameters (ConfigError naming a bad one)."""
        built = []
        for prefix, section in self._sections():
            values = {f.name: _plain(self._values[prefix + f.name])
                      for f in dataclasses.fields(section)}
            built.append(build_section(section, values))
        return tuple(built)

    # ------------------------------------------------------------------ inputs
    def _setup_inputs(self) -> None:
        ros = self.ros
        qos = qos_profile_sensor_data if ros.image_qos == "sensor_data" else QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.sync = None
        if ros.use_depth:
            topics = {TOPICS["color"]: Image, TOPICS["depth"]: Image}
            self.sync = RosApproximateSync(self, topics, self._on_images, qos=qos,
                                           optional=[TOPICS["depth"]], queue_size=10,
                                           slop_s=ros.sync_slop_s, optional_wait_s=ros.depth_wait_s,
                                           callback_group=self._inputs_group)
        else:
            self.create_subscription(Image, TOPICS["color"], self._on_images, qos,
                                     callback_group=self._inputs_group)
        self._color_topic = self.resolve_topic_name(TOPICS["color"])
        self._depth_topic = self.resolve_topic_name(TOPICS["depth"]) if ros.use_depth else ""

    def _on_images(self, rgb_msg, depth_msg=None) -> None:
        """Check encodings, apply max_rate_hz, put the frame into the slot (never blocks)."""
        self.counters.inc("frames_in")
        encoding = str(rgb_msg.encoding)
        if encoding not in _RGB_ENCODINGS:
            self._bad_input("bad_encoding", f"colour image has encoding {encoding!r}; expected "
                            f"one of {', '.join(_RGB_ENCODINGS)}")
            return
        if depth_msg is not None and str(depth_msg.encoding) not in _DEPTH_ENCODINGS:
            self._bad_input("bad_encoding", f"depth image has encoding {depth_msg.encoding!r}; "
                            f"expected one of {', '.join(_DEPTH_ENCODINGS)} (segmenting without)")
            depth_msg = None
        if not self._gate.accept(self.get_clock().now().nanoseconds):
            self.counters.inc("skipped_rate")
            return
        if self._slot.put((rgb_msg, depth_msg)):
            self.counters.inc("dropped_busy" if self._listened() else "dropped_unsubscribed")

    def _listened(self) -> bool:
        """Whether a subscription to segmentation/instance is matched."""
        return self.instance_pub.get_subscription_count() > 0

    def _bad_input(self, counter: str, message: str) -> None:
        """Count a bad input and log it (one line per kind every LOG_THROTTLE_S)."""
        total = self.counters.inc(counter)
        self._log(counter, f"{message} ({counter}: {total} so far)")

    def _log(self, kind: str, message: str, *, error: bool = False) -> None:
        # One child logger per kind: rclpy throttles per logger and call site, so kinds
        # logged through this one line would otherwise silence each other.
        logger = self._loggers.get(kind)
        if logger is None:
            logger = self._loggers[kind] = self.get_logger().get_child(kind)
        (logger.error if error else logger.warning)(message, throttle_duration_sec=LOG_THROTTLE_S)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                listened = self._listened()
            except Exception:
                if not self.context.ok():  # SIGTERM shut the context down between two checks
                    return
                raise
            if not listened:
                # Nobody takes the segmentations (yet): the frames wait in the queue, so a
                # consumer that is still being discovered gets the first ones too.
                self._stop.wait(0.02)
                continue
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:
                if not self.context.ok():  # shut down (SIGTERM) while publishing: not an error
                    return
                total = self.counters.inc("segmenter_errors")
                self._log("segmenter_errors", f"{self.backend.describe()} failed on the image "
                          f"stamped {tfm.stamp_to_s(item[0].header.stamp):.3f}: {exc} "
                          f"(segmenter_errors: {total} so far)", error=True)

    def _process(self, rgb_msg, depth_msg) -> None:
        start = time.perf_counter()
        try:
            rgb = conv.image_to_rgb(rgb_msg)
        except ValueError as exc:
            self._bad_input("bad_image", f"colour image: {exc}")
            return
        depth = None
        if depth_msg is not None:
            try:
                depth = conv.image_to_depth_m(depth_msg, depth_unit_m=self.ros.depth_unit_m)
            except ValueError as exc:
                self._bad_input("bad_image", f"depth image: {exc} (segmenting without)")
            if depth is not None and depth.shape != rgb.shape[:2]:
                self._bad_input("size_mismatch", f"depth image is {depth.shape[1]}x"
                                f"{depth.shape[0]}, the colour image {rgb.shape[1]}x"
                                f"{rgb.shape[0]} (segmenting without)")
                depth = None
        if depth is None and self.ros.use_depth:
            self.counters.inc("depth_missing")
        result = self.backend.segment(rgb, depth)
        self._publish(result, rgb_msg.header)
        elapsed_ms = 1000.0 * (time.perf_counter() - start)
        self._timing_ms.append(elapsed_ms)
        self._last = {"ms_last": elapsed_ms, "segments_last": result.num_instances}
        self.counters.inc("frames_out")

    def _publish(self, result: Segmentation, header) -> None:
        """The outputs with the input's stamp and frame_id (semantic/confidence when given)."""
        stamp_ns, frame_id = tfm.stamp_to_ns(header.stamp), str(header.frame_id)
        # Build every message first, so that a failure publishes none of them.
        msgs = [(self.instance_pub, _label_image(result.instance, stamp_ns, frame_id))]
        if result.semantic is not None and self.semantic_pub is not None:
            msgs.append((self.semantic_pub, _label_image(result.semantic, stamp_ns, frame_id)))
        if result.confidence is not None and self.confidence_pub is not None:
            msgs.append((self.confidence_pub, conv.confidence_to_image(
                result.confidence, stamp_ns=stamp_ns, frame_id=frame_id)))
        for pub, msg in msgs:
            pub.publish(msg)

    # ------------------------------------------------------------------ status
    def status_values(self) -> dict[str, Any]:
        """Everything ``~/status`` reports, as a flat dictionary."""
        if self.sync is not None and self.sync.sync is not None:
            stats = self.sync.sync.stats
            self.counters.set("sync_waiting", stats.total("dropped_overflow")
                              + stats.total("dropped_unmatched"))
            self.counters.set("sync_late", stats.total("dropped_late"))
        timings = list(self._timing_ms)
        values: dict[str, Any] = {"backend": self.backend.describe()}
        values.update(self.counters.snapshot())
        values["ms_per_frame"] = float(np.mean(timings)) if timings else 0.0
        values.update(self._last)
        return values

    def _publish_status(self) -> None:
        values = self.status_values()
        status = DiagnosticStatus(name=f"{self.get_name()}: 2D segmenter",
                                  hardware_id=str(values["backend"]))
        if values["segmenter_errors"]:
            status.level, status.message = DiagnosticStatus.WARN, "segmenting (errors occurred)"
        elif values["frames_in"] == 0:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for images"
        elif not self._listened():
            status.level = DiagnosticStatus.WARN
            status.message = f"waiting for a subscriber to {self.instance_pub.topic_name} (frames queue)"
        else:
            status.level, status.message = DiagnosticStatus.OK, "segmenting"
        status.values = [KeyValue(key=k, value=(f"{v:.6g}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker (the frame it is segmenting is finished first)."""
        self._stop.set()
        self._slot.close()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=timeout)

    def destroy_node(self):
        self.shutdown()
        return super().destroy_node()


def main(args=None) -> int:
    """Run the segmenter node until Ctrl-C or SIGTERM; 0 on a clean stop, 1 on an error."""
    # Inputs and the status timer have their own callback groups: 2 threads keep the
    # status going while an image callback runs (segmenting happens on the worker).
    return spin_node(SegmenterNode, "segmenter_node", num_threads=2, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
