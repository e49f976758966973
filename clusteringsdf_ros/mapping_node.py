"""The ``mapping_node``: camera + segmenter topics in, objects with stable ids out.

Thin glue over :mod:`clusteringsdf_core`:

- **inputs**: colour image, camera_info and instance labels (+ depth, semantic ids and
  confidence when their ``ros.*_topic`` is not empty, as optional inputs) are
  synchronised by :class:`~clusteringsdf_ros.sync.RosApproximateSync`; the camera pose
  comes from TF (``ros.pose_source: tf``, where ``tf2_ros`` is importable; otherwise ONE
  error is logged and the node falls back to the PoseStamped topic), a
  ``geometry_msgs/PoseStamped`` topic or a ``nav_msgs/Odometry`` topic. Topic poses are
  kept in a short history and matched to the image stamp (interpolated between the
  poses around it, else the nearest one within ``ros.sync_slop_s``; a set waits
  briefly for a pose that has not arrived yet, then is dropped and counted).
- **callbacks** only convert (:func:`frame_from_messages`), validate and enqueue into a
  bounded queue (``ros.frame_queue_size``; when full the oldest frame is dropped and
  counted). Every kind of bad input gets a named counter in the status and one
  throttled log line; none of them stops the node or touches the model. Their wall
  time is in the status (``callback_synced_*``: a synchronised set including its
  conversion; ``callback_pose_*``; count, mean/p50/p99/max ms over the last
  :data:`CALLBACK_TIME_WINDOW` calls; ``python -m clusteringsdf_ros.bench_callbacks``
  measures them at 30 Hz 640x480). Input stamps more than :data:`TIME_JUMP_BACK_S`
  behind the last set (a looping bag) clear the synchroniser, the old poses and the
  sets waiting for one, are logged and counted (``time_jump_back``), and the new set
  is accepted; smaller steps back are ``out_of_order`` drops.
- **a trainer thread** (:class:`MappingWorker`) owns the :class:`~clusteringsdf_core.trainer.Trainer`:
  it drains the queue (``add_frame``), runs ``step()`` while there are views, and
  every ``ros.extract_period_s`` hands an immutable snapshot to an extractor thread,
  which extracts the objects and gives them stable ids (one
  :class:`~clusteringsdf_core.extract.ObjectTracker` for the node's life, kept across
  resets so ids are never reused). Periodic extractions publish a new object once it
  has been seen in ``extract.confirm_after`` consecutive extractions and drop one after
  ``extract.drop_after`` misses, so fragments that flicker while the model trains never
  reach planners; ``~/extract_now`` and saves publish new objects at once. The result
  is an immutable :class:`ObjectsResult` that the timers read.
- **scene bounds**: the trainer needs them when it is created. With ``ros.bounds_m``
  empty (default) it is created lazily from the first :data:`BOOTSTRAP_FRAMES` frames:
  their depth back-projected into the map frame (0.5/99.5 percentiles, plus the camera
  centres), expanded by :data:`BOUNDS_MARGIN_XY_M` horizontally and
  :data:`BOUNDS_MARGIN_Z_M` vertically (0.5 m, 0.25 m). Without depth, the camera frusta up to
  :data:`RGB_ONLY_REACH_M` stand in for the depth points. ``ros.bounds_m`` =
  ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (metres, map frame) fixes them instead.
- **outputs**: ``ros.objects_topic`` (``clusteringsdf_ros/ObjectArray``, reliable +
  transient local, depth 1) and ``~/markers`` (MarkerArray: DELETEALL, then per object a
  TRIANGLE_LIST mesh coloured by id, a LINE_LIST box and a TEXT_VIEW_FACING label) every
  ``ros.publish_period_s``; ``~/status`` (``diagnostic_msgs/DiagnosticArray``: iteration,
  losses, it/s, frames received/buffered, every drop and bad-input counter) every
  ``ros.status_period_s``.
- **services** (``std_srvs/Trigger``): ``~/save_map`` (meshes + ``objects.json`` +
  ``checkpoint.pt`` + ``config.yaml`` + ``map.json`` into a timestamped folder under
  ``ros.output_dir``; the reply's message is the folder), ``~/reset`` (a new model with
  the current parameters; ids keep counting), ``~/extract_now``. The map is saved on
  shutdown when ``ros.save_on_shutdown``.
- **parameters**: every field of the core tree (``loss.lambda_diff``) with its help text
  as description, defaults from the ``cpu`` preset, plus ``ros.*``
  (:class:`~clusteringsdf_ros.params.RosConfig`) and ``ros.bounds_m``. Changes are
  validated as a whole tree (rejected with the :class:`ConfigError` message); ``loss.*``
  and ``trainer.lr`` apply to the running model, ``ros.extract_period_s`` applies at
  once, other core fields at the next ``~/reset``, other ``ros.*`` fields at the next
  start (the set-parameters reply says which).

    python -m clusteringsdf_ros.mapping_node --ros-args --params-file config/mapping.yaml
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped, Vector3
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from clusteringsdf_core.config import (Config, ConfigError, build_section, field_help, flatten,
                                       save_yaml, unflatten)
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame, check_pose
from clusteringsdf_core.presets import preset
from clusteringsdf_ros import conversions as conv
from clusteringsdf_ros.msg import Object, ObjectArray
from clusteringsdf_ros.node_main import spin_node
from clusteringsdf_ros.params import RosConfig
from clusteringsdf_ros.sync import RosApproximateSync

__all__ = [
    "MappingNode", "MappingWorker", "ObjectsResult", "InputError", "FrameNotes", "Counters",
    "PoseHistory", "frame_from_messages", "estimate_bounds", "decimate_mesh",
    "count_observations", "objects_to_msg", "objects_to_markers", "COUNTERS", "main",
    "CallbackTimes", "TIME_JUMP_BACK_S",
    "BOOTSTRAP_FRAMES", "BOUNDS_MARGIN_XY_M", "BOUNDS_MARGIN_Z_M", "MAX_MESH_FACES",
]

_NS = 1_000_000_000

#: Frames whose depth sets the scene bounds before the trainer is created.
BOOTSTRAP_FRAMES = 5
#: Margins added to the bounds seen in the first frames (metres): horizontal, vertical.
#: Small on purpose: the dense grid spreads over the box, and 2 m margins (a box 4x the
#: room's area) cost 44 PQ^scene points on the demo scene (60.3 -> 16.0, F-score 90 ->
#: 53). The first frames of a room usually see across it; set ``ros.bounds_m`` for
#: spaces the camera will only discover later.
BOUNDS_MARGIN_XY_M = 0.5
BOUNDS_MARGIN_Z_M = 0.25
#: RGB-only bounds: how far in front of the cameras the scene is assumed to reach.
RGB_ONLY_REACH_M = 3.0
#: Faces of a published object mesh at most (vertex clustering beyond).
MAX_MESH_FACES = 5000
#: Topic poses are interpolated between two poses at most this far apart.
MAX_POSE_INTERPOLATION_GAP_S = 0.25
#: A synchronised set waits at most this long (wall time) for a pose newer than its stamp.
POSE_WAIT_S = 1.0
#: Seconds between two log lines of one kind of bad input.
LOG_THROTTLE_S = 5.0
#: Input stamps more than this far behind the last ones (seconds) restart the timeline
#: (a looping bag player): smaller steps back are out-of-order drops.
TIME_JUMP_BACK_S = 1.0
#: Callback durations kept per input path for the status statistics.
CALLBACK_TIME_WINDOW = 1000

#: Every counter of the status, with what it counts.
COUNTERS: dict[str, str] = {
    "sets_received": "synchronised input sets received",
    "frames_enqueued": "frames converted and queued for the trainer",
    "frames_kept": "frames the key-frame buffer kept",
    "frames_not_keyframe": "frames the key-frame buffer declined (too close to the last one)",
    "frames_bootstrap_skipped": "frames without valid depth skipped while the bounds are estimated",
    "dropped_queue_full": "frames dropped because the trainer queue was full (oldest first)",
    "bad_encoding": "images with an encoding that input does not accept",
    "bad_image": "images whose layout (step, size) is broken",
    "bad_camera_info": "camera_info messages that give no usable pinhole intrinsics",
    "size_mismatch": "sets whose images / camera_info disagree in size",
    "bad_labels": "label images with negative ids",
    "bad_pose": "poses with NaN/inf values or a non-rigid rotation",
    "pose_wrong_frame": "poses not expressed in ros.map_frame",
    "pose_unmatched": "sets dropped: no pose within the slop of the image stamp",
    "out_of_order": "sets older than the last accepted set (by at most TIME_JUMP_BACK_S)",
    "time_jump_back": "input stamps that jumped back more than TIME_JUMP_BACK_S (bag loop): "
                      "synchroniser, poses and pending sets cleared, the new set accepted",
    "labels_merged": "frames with more labels than channels (smallest labels merged into 0)",
    "empty_labels": "frames without any instance label (kept: key-frame rules handle them)",
    "depth_missing": "sets that came without depth although a depth topic is set",
    "sync_waiting": "messages that waited in the synchroniser and never made a set",
    "sync_late": "messages older than what their topic already contributed",
    "rejected_by_trainer": "frames the trainer refused (ValueError)",
    "trainer_errors": "exceptions in the trainer or extractor threads",
    "extractions": "object extractions done",
}

_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
_LABEL_ENCODINGS = ("16UC1", "mono16", "32SC1", "mono8", "8UC1")
_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_CONFIDENCE_ENCODINGS = ("32FC1", "16UC1", "mono16", "mono8", "8UC1")
_LIVE_SECTIONS = ("loss.",)
_LIVE_FIELDS = ("trainer.lr",)
_LIVE_ROS_FIELDS = ("ros.extract_period_s",)


# =========================================================================== pure helpers


class InputError(ValueError):
    """A message set that cannot become a frame; ``counter`` names the status counter."""

    def __init__(self, counter: str, message: str):
        super().__init__(message)
        self.counter = counter


@dataclass(frozen=True)
class FrameNotes:
    """What :func:`frame_from_messages` changed or noticed in a usable frame."""

    labels_merged: int = 0     # labels merged into 0 (more labels than channels)
    empty_labels: bool = False
    depth_missing: bool = False


class Counters:
    """Named event counters, safe to bump from any thread."""

    def __init__(self, names: Sequence[str] = tuple(COUNTERS)):
        self._lock = threading.Lock()
        self._values = {name: 0 for name in names}

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + int(n)

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._values[name] = int(value)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class CallbackTimes:
    """Wall time of one callback path: ``count`` calls since the start (or :meth:`clear`),
    the last ``window`` durations for mean / p50 / p99 / max in milliseconds.
    Thread-safe; :meth:`add` is O(1), the statistics are computed when asked."""

    def __init__(self, window: int = CALLBACK_TIME_WINDOW):
        self._lock = threading.Lock()
        self._times: collections.deque[float] = collections.deque(maxlen=int(window))
        self._count = 0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._times.append(float(seconds))
            self._count += 1

    def clear(self) -> None:
        with self._lock:
            self._times.clear()
            self._count = 0

    def summary(self) -> dict[str, float | int]:
        """``count``, ``window`` (durations kept) and ``mean/p50/p99/max_ms`` over them."""
        with self._lock:
            times, count = np.fromiter(self._times, np.float64, len(self._times)), self._count
        out: dict[str, float | int] = {"count": count, "window": len(times)}
        ms = times * 1000.0 if len(times) else np.zeros(1)
        out.update(mean_ms=round(float(ms.mean()), 3),
                   p50_ms=round(float(np.percentile(ms, 50)), 3),
                   p99_ms=round(float(np.percentile(ms, 99)), 3),
                   max_ms=round(float(ms.max()), 3))
        return out


def _decode(kind: str, msg, allowed: Sequence[str], decoder: Callable, **kwargs) -> np.ndarray:
    encoding = str(msg.encoding)
    if encoding not in allowed:
        raise InputError("bad_encoding", f"{kind} image has encoding {encoding!r}; expected one "
                         f"of {', '.join(allowed)}")
    try:
        return decoder(msg, **kwargs)
    except ValueError as exc:
        raise InputError("bad_image", f"{kind} image: {exc}") from None


def _same_size(kind: str, image: np.ndarray, width: int, height: int) -> None:
    if image.shape[:2] != (height, width):
        raise InputError("size_mismatch", f"{kind} image is {image.shape[1]}x{image.shape[0]}, "
                         f"the colour image is {width}x{height}")


#: Largest label id renumbered through a lookup table (bincount) instead of a sort.
_LABEL_LUT_LIMIT = 1 << 20


def _compact_labels(labels: np.ndarray, max_labels: int | None) -> tuple[np.ndarray, int]:
    """Ids renumbered 1..n (0 stays 0); beyond ``max_labels`` the smallest labels become 0.

    Non-negative ids below :data:`_LABEL_LUT_LIMIT` (16UC1, and 32SC1 in practice) go
    through bincount + a lookup table: ~1 ms for 640x480 instead of ~9 ms for the
    sort in np.unique, which dominated the image callback. Same result either way."""
    if labels.size and labels.dtype.kind in "iu":
        flat = labels.reshape(-1)
        lo, hi = int(flat.min()), int(flat.max())
        if lo >= 0 and hi < _LABEL_LUT_LIMIT:
            counts = np.bincount(flat if flat.dtype != np.uint64 else flat.astype(np.int64))
            present = np.flatnonzero(counts)
            keep = present[present > 0]
            merged = 0
            if max_labels is not None and len(keep) > max_labels:
                ranked = keep[np.lexsort((keep, -counts[keep]))]   # largest first, ties: smaller id
                merged = len(keep) - max_labels
                keep = np.sort(ranked[:max_labels])
            lut = np.zeros(hi + 1, np.int32)
            lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
            return lut[labels], merged
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(labels.shape)
    foreground = ids > 0
    new_ids = np.zeros(len(ids), np.int32)
    order = np.flatnonzero(foreground)
    merged = 0
    if max_labels is not None and len(order) > max_labels:
        # Keep the largest labels (ties: the smaller id), merge the rest into 0.
        ranked = order[np.lexsort((ids[order], -counts[order]))]
        merged = len(order) - max_labels
        order = np.sort(ranked[:max_labels])
    new_ids[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return new_ids[inverse], merged


def frame_from_messages(rgb_msg, info_msg, instance_msg, T_world_cam: np.ndarray, *,
                        depth_msg=None, semantic_msg=None, confidence_msg=None,
                        max_labels: int | None = None, index: int = 0,
                        depth_unit_m: float = 0.001, expect_depth: bool = False,
                        ) -> tuple[Frame, FrameNotes]:
    """A core :class:`Frame` from one synchronised set of messages and the camera pose.

    ``T_world_cam`` is the 4x4 pose of the camera optical frame in the map frame.
    Instance ids are renumbered 1..n per view (0 = no label); when a view has more
    than ``max_labels`` labels (the foreground channels) the smallest ones are
    merged into 0 and the frame is kept (:attr:`FrameNotes.labels_merged`). An empty
    label map is kept too. Raises :class:`InputError` (a ValueError naming the
    status counter) for a set that cannot be used.
    """
    rgb = _decode("colour", rgb_msg, _RGB_ENCODINGS, conv.image_to_rgb)
    height, width = rgb.shape[:2]
    try:
        intrinsics = conv.camera_info_to_intrinsics(info_msg)
    except ValueError as exc:
        raise InputError("bad_camera_info", f"camera_info: {exc}") from None
    if (intrinsics.width, intrinsics.height) != (width, height):
        raise InputError("size_mismatch", f"camera_info is for {intrinsics.width}x"
                         f"{intrinsics.height} images, the colour image is {width}x{height}")
    instance = _decode("instance", instance_msg, _LABEL_ENCODINGS, conv.image_to_labels)
    _same_size("instance", instance, width, height)
    if instance.size and int(instance.min()) < 0:
        raise InputError("bad_labels", f"instance image has negative ids (min {int(instance.min())})")
    depth = semantic = confidence = None
    if depth_msg is not None:
        depth = _decode("depth", depth_msg, _DEPTH_ENCODINGS, conv.image_to_depth_m,
                        depth_unit_m=depth_unit_m)
        _same_size("depth", depth, width, height)
    if semantic_msg is not None:
        semantic = _decode("semantic", semantic_msg, _LABEL_ENCODINGS, conv.image_to_labels)
        _same_size("semantic", semantic, width, height)
        if semantic.size and int(semantic.min()) < 0:
            raise InputError("bad_labels", "semantic image has negative class ids")
    if confidence_msg is not None:
        confidence = _decode("confidence", confidence_msg, _CONFIDENCE_ENCODINGS,
                             conv.image_to_confidence)
        _same_size("confidence", confidence, width, height)
    try:
        T = check_pose(T_world_cam)
    except ValueError as exc:
        raise InputError("bad_pose", f"camera pose: {exc}") from None
    labels, merged = _compact_labels(instance, max_labels)
    frame = Frame(index=int(index), rgb=rgb, T_world_cam=T, intrinsics=intrinsics,
                  stamp_s=conv.stamp_to_s(rgb_msg.header.stamp), depth_m=depth, instance=labels,
                  semantic=semantic, confidence=confidence)
    notes = FrameNotes(labels_merged=merged, empty_labels=not bool((labels > 0).any()),
                       depth_missing=expect_depth and depth is None)
    return frame, notes


class PoseHistory:
    """Recent camera poses by stamp; :meth:`lookup` matches an image stamp.

    Between two poses at most ``max_gap_ns`` apart the pose is interpolated (linear
    translation, slerp rotation); otherwise the nearest pose within ``slop_ns`` is
    used; otherwise there is no pose for that stamp.
    """

    def __init__(self, max_len: int = 200, max_gap_ns: int = int(MAX_POSE_INTERPOLATION_GAP_S * _NS)):
        self.max_len = int(max_len)
        self.max_gap_ns = int(max_gap_ns)
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, T: np.ndarray) -> None:
        import bisect

        with self._lock:
            i = bisect.bisect_right(self._stamps, int(stamp_ns))
            self._stamps.insert(i, int(stamp_ns))
            self._poses.insert(i, np.asarray(T, dtype=np.float64))
            if len(self._stamps) > self.max_len:
                del self._stamps[0], self._poses[0]

    @property
    def newest_ns(self) -> int | None:
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        with self._lock:
            self._stamps, self._poses = [], []

    def drop_newer_than(self, stamp_ns: int) -> int:
        """Forget the poses stamped after ``stamp_ns``; returns how many."""
        import bisect

        with self._lock:
            i = bisect.bisect_right(self._stamps, int(stamp_ns))
            dropped = len(self._stamps) - i
            del self._stamps[i:], self._poses[i:]
            return dropped

    def lookup(self, stamp_ns: int, slop_ns: int) -> np.ndarray | None:
        import bisect

        from scipy.spatial.transform import Rotation, Slerp

        t = int(stamp_ns)
        with self._lock:
            if not self._stamps:
                return None
            i = bisect.bisect_left(self._stamps, t)
            after = i if i < len(self._stamps) else None
            before = i - 1 if i > 0 else None
            if after is not None and self._stamps[after] == t:
                return self._poses[after].copy()
            if before is not None and after is not None:
                t0, t1 = self._stamps[before], self._stamps[after]
                if t1 - t0 <= self.max_gap_ns:
                    w = (t - t0) / (t1 - t0)
                    T0, T1 = self._poses[before], self._poses[after]
                    rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]])))
                    T = np.eye(4)
                    T[:3, :3] = rot([w]).as_matrix()[0]
                    T[:3, 3] = (1 - w) * T0[:3, 3] + w * T1[:3, 3]
                    return T
            candidates = [j for j in (before, after) if j is not None]
            j = min(candidates, key=lambda k: abs(self._stamps[k] - t))
            if abs(self._stamps[j] - t) <= slop_ns:
                return self._poses[j].copy()
            return None


def estimate_bounds(frames: Sequence[Frame], *, depth_min_m: float = 0.1, depth_max_m: float = 10.0,
                    margin_xy_m: float = BOUNDS_MARGIN_XY_M, margin_z_m: float = BOUNDS_MARGIN_Z_M,
                    rgb_only_reach_m: float = RGB_ONLY_REACH_M, max_points_per_frame: int = 5000,
                    ) -> np.ndarray:
    """(2, 3) scene bounds [min, max] in the map frame from a few frames.

    The frames' valid depth (``depth_min_m``..``depth_max_m``) back-projected into the
    map frame, plus the camera centres; frames without depth add their frustum up to
    ``rgb_only_reach_m``. The 0.5 / 99.5 percentiles are expanded by the margins.
    """
    if not frames:
        raise ValueError("no frames to estimate the scene bounds from")
    points, centres = [], []
    for frame in frames:
        T = np.asarray(frame.T_world_cam, dtype=np.float64)
        K = frame.intrinsics
        centres.append(T[:3, 3])
        depth = frame.depth_m
        if depth is not None:
            v, u = np.nonzero((depth >= depth_min_m) & (depth <= depth_max_m) & np.isfinite(depth))
            if len(v) > max_points_per_frame:
                pick = np.linspace(0, len(v) - 1, max_points_per_frame).astype(np.int64)
                v, u = v[pick], u[pick]
            z = depth[v, u].astype(np.float64)
        else:  # image corners at the assumed reach
            u = np.array([0, K.width - 1, 0, K.width - 1])
            v = np.array([0, 0, K.height - 1, K.height - 1])
            z = np.full(4, rgb_only_reach_m)
        if len(z):
            cam = np.stack([(u + 0.5 - K.cx) / K.fx * z, (v + 0.5 - K.cy) / K.fy * z, z], axis=1)
            points.append(cam @ T[:3, :3].T + T[:3, 3])
    centres = np.stack(centres)
    lo, hi = centres.min(0), centres.max(0)
    if points:  # outlier-robust extent of the surfaces, always holding the cameras
        pts = np.concatenate(points)
        lo = np.minimum(lo, np.percentile(pts, 0.5, axis=0))
        hi = np.maximum(hi, np.percentile(pts, 99.5, axis=0))
    margin = np.array([margin_xy_m, margin_xy_m, margin_z_m])
    return np.stack([lo - margin, hi + margin])


def decimate_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int = MAX_MESH_FACES,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_faces`` triangles: vertex clustering on a grid that coarsens until the
    mesh fits (dependency-free; shapes stay recognisable for planners and RViz)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) <= max_faces:
        return vertices, faces
    tri = vertices[faces]
    area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                                      axis=1).sum())
    # A surface of area A on a grid of cell h keeps about 2 A / h^2 triangles.
    cell = max(math.sqrt(2.0 * area / max_faces), 1e-9)
    origin = vertices.min(0)
    for _ in range(60):
        keys = np.floor((vertices - origin) / cell).astype(np.int64)
        dims = keys.max(0) + 1
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
        _, cluster, counts = np.unique(flat, return_inverse=True, return_counts=True)
        sums = np.zeros((len(counts), 3))
        np.add.at(sums, cluster, vertices)
        new_faces = cluster[faces]
        keep = ((new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2])
                & (new_faces[:, 0] != new_faces[:, 2]))
        new_faces = new_faces[keep]
        s = np.sort(new_faces, axis=1)
        n = len(counts)
        _, first = np.unique((s[:, 0] * n + s[:, 1]) * n + s[:, 2], return_index=True)
        new_faces = new_faces[np.sort(first)]   # duplicates removed, order kept
        if len(new_faces) <= max_faces:
            used, remap = np.unique(new_faces, return_inverse=True)
            return (sums / counts[:, None])[used], remap.reshape(-1, 3)
        cell *= 1.25
    raise ValueError(f"could not decimate a mesh of {len(faces)} faces to {max_faces}")


@dataclass(frozen=True)
class ViewSummary:
    """What observation counting needs of a key frame (CPU, small)."""

    K: np.ndarray               # (3, 3), core pixel convention
    T_world_cam: np.ndarray     # (4, 4)
    width: int
    height: int
    depth_small: np.ndarray | None   # (ceil(H/stride), ceil(W/stride)) metres, 0 = unknown
    stride: int


def count_observations(vertices: np.ndarray, views: Sequence[ViewSummary], *,
                       near_m: float = 0.05, depth_tolerance_m: float = 0.15,
                       samples: int = 100, min_visible_share: float = 0.1) -> int:
    """Key frames that see an object: at least ``min_visible_share`` of sampled mesh
    vertices project into the image, in front of the camera and not behind the measured
    depth (where the view has depth)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(vertices) == 0 or not views:
        return 0
    pick = np.linspace(0, len(vertices) - 1, min(samples, len(vertices))).astype(np.int64)
    pts = vertices[pick]
    seen = 0
    for view in views:
        R, t = view.T_world_cam[:3, :3], view.T_world_cam[:3, 3]
        cam = (pts - t) @ R
        z = cam[:, 2]
        front = z > near_m
        zs = np.where(front, z, 1.0)
        u = view.K[0, 0] * cam[:, 0] / zs + view.K[0, 2]
        v = view.K[1, 1] * cam[:, 1] / zs + view.K[1, 2]
        inside = front & (u >= 0) & (u < view.width) & (v >= 0) & (v < view.height)
        if view.depth_small is not None and inside.any():
            ui = (np.floor(u[inside]).astype(np.int64) // view.stride)
            vi = (np.floor(v[inside]).astype(np.int64) // view.stride)
            d = view.depth_small[np.clip(vi, 0, view.depth_small.shape[0] - 1),
                                 np.clip(ui, 0, view.depth_small.shape[1] - 1)]
            ok = (d <= 0) | (z[inside] <= d + depth_tolerance_m)
            inside[np.flatnonzero(inside)[~ok]] = False
        if inside.sum() >= max(1, min_visible_share * len(pts)):
            seen += 1
    return seen


# =========================================================================== results -> messages


@dataclass(frozen=True)
class ObjectsResult:
    """One extraction: tracked objects (read-only by convention) of a model snapshot."""

    seq: int
    iteration: int
    stamp_ns: int                    # ROS time of the snapshot
    objects: tuple                   # TrackedObject, sorted by id
    seconds: float                   # extraction time


def _colour(object_id: int, alpha: float = 1.0) -> ColorRGBA:
    from clusteringsdf_core.viz import label_colours

    r, g, b = label_colours(np.array([object_id]))[0] / 255.0
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))


def _points(xyz: np.ndarray) -> list:
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(xyz, np.float64)]


def _ros_time(seconds: float):
    return conv.s_to_stamp(max(0.0, float(seconds)))


def objects_to_msg(result: ObjectsResult, classes: ClassTable, map_frame: str, *,
                   max_faces: int = MAX_MESH_FACES) -> ObjectArray:
    """The ``ObjectArray`` of an extraction (every field filled; meshes decimated)."""
    msg = ObjectArray()
    msg.header.frame_id = map_frame
    msg.header.stamp = conv.ns_to_stamp(result.stamp_ns)
    msg.iteration = int(result.iteration)
    for tracked in result.objects:
        o = tracked.object
        vertices, faces = decimate_mesh(o.mesh.vertices, o.mesh.faces, max_faces)
        item = Object()
        item.id = int(tracked.id)
        item.class_id = int(max(0, o.class_id))
        item.class_name = classes.name_of(int(o.class_id))
        item.confidence = float(np.clip(o.confidence, 0.0, 1.0))
        c = np.asarray(o.centroid, np.float64)
        item.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
        item.bbox_pose = conv.matrix_to_pose(o.box_pose)
        s = np.asarray(o.box_size, np.float64)
        item.bbox_size = Vector3(x=float(s[0]), y=float(s[1]), z=float(s[2]))
        item.volume = float(o.volume)
        item.mesh = Mesh(vertices=_points(vertices),
                         triangles=[MeshTriangle(vertex_indices=[int(a), int(b), int(c_)])
                                    for a, b, c_ in faces])
        item.num_observations = int(tracked.num_observations)
        item.first_seen = _ros_time(tracked.first_seen)
        item.last_updated = _ros_time(tracked.last_updated)
        msg.objects.append(item)
    return msg


_BOX_EDGES = np.array([[0, 1], [1, 3], [3, 2], [2, 0], [4, 5], [5, 7], [7, 6], [6, 4],
                       [0, 4], [1, 5], [2, 6], [3, 7]])


def objects_to_markers(msg: ObjectArray) -> MarkerArray:
    """RViz markers of an ``ObjectArray``: DELETEALL, then per object a TRIANGLE_LIST mesh
    coloured by id (namespace ``mesh``), a LINE_LIST box (``box``) and a
    TEXT_VIEW_FACING label (``label``), marker id = object id."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=msg.header, action=Marker.DELETEALL))
    forever = Duration(sec=0, nanosec=0)
    for obj in msg.objects:
        colour = _colour(obj.id)
        mesh = Marker(header=msg.header, ns="mesh", id=int(obj.id), type=Marker.TRIANGLE_LIST,
                      action=Marker.ADD, lifetime=forever, color=colour)
        mesh.pose.orientation.w = 1.0
        mesh.scale = Vector3(x=1.0, y=1.0, z=1.0)
        mesh.points = [obj.mesh.vertices[i] for tri in obj.mesh.triangles for i in tri.vertex_indices]
        box = Marker(header=msg.header, ns="box", id=int(obj.id), type=Marker.LINE_LIST,
                     action=Marker.ADD, lifetime=forever, color=colour, pose=obj.bbox_pose)
        box.scale.x = 0.02
        half = np.array([obj.bbox_size.x, obj.bbox_size.y, obj.bbox_size.z]) / 2.0
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
        box.points = _points(corners[_BOX_EDGES.reshape(-1)])
        label = Marker(header=msg.header, ns="label", id=int(obj.id), type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, lifetime=forever,
                       color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label.pose = conv.matrix_to_pose(np.eye(4))
        label.pose.position = Point(x=obj.bbox_pose.position.x, y=obj.bbox_pose.position.y,
                                    z=obj.bbox_pose.position.z + half[2] + 0.1)
        label.scale.z = 0.15
        label.text = f"{obj.id}: {obj.class_name} ({obj.confidence:.2f})"
        markers.markers.extend([mesh, box, label])
    return markers


# =========================================================================== trainer thread


class _ExtractJob(NamedTuple):
    """A snapshot waiting for the extractor thread."""

    snapshot: Any
    views: list
    device: str
    covers: int | None                 # extract_now requests it serves (None: none)
    future: concurrent.futures.Future | None   # set for saves: a caller waits on it
    requested: bool                    # a save or extract_now: new objects publish at once

    @property
    def waited_on(self) -> bool:
        return self.future is not None


class MappingWorker:
    """Owns the trainer (one thread) and the extraction (another); ROS-free.

    ``put(frame)`` queues a frame (drop-oldest); the trainer thread drains the queue,
    creates the trainer lazily (bounds from ``bounds_m`` or the first
    :data:`BOOTSTRAP_FRAMES` frames), trains while there are views and hands a
    snapshot to the extractor every ``extract_period_s``. :attr:`latest_result` is the
    newest :class:`ObjectsResult`. Other threads reach the trainer through
    :meth:`submit` (a function run by the trainer thread between steps).
    """

    def __init__(self, config: Config, *, classes: ClassTable = SCANNET_REDUCED,
                 bounds_m: np.ndarray | None = None, queue_size: int = 8,
                 extract_period_s: float = 10.0, counters: Counters | None = None,
                 now_ns: Callable[[], int] = time.time_ns,
                 log: Callable[[str, str], None] = lambda level, msg: None,
                 bootstrap_frames: int = BOOTSTRAP_FRAMES):
        from clusteringsdf_core.extract import ObjectTracker

        self.config = config                   # the config a new trainer gets
        self.classes = classes
        self.bounds_m = None if bounds_m is None else np.asarray(bounds_m, np.float64).reshape(2, 3)
        self.extract_period_s = float(extract_period_s)
        self.counters = counters or Counters()
        self.now_ns = now_ns
        self.log = log
        self.bootstrap_frames = int(bootstrap_frames)
        self.tracker = ObjectTracker.from_config(config.extract)
        self._queue: collections.deque[Frame] = collections.deque(maxlen=int(queue_size))
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._commands: collections.deque = collections.deque()
        self._trainer = None
        self._bootstrap: list[Frame] = []
        self._state_lock = threading.Lock()
        self._stats: dict[str, Any] = {"iteration": 0, "losses": {}, "views": 0,
                                       "it_per_s": 0.0, "state": "waiting_for_frames",
                                       "bounds_m": None}
        self._rate_window: collections.deque = collections.deque(maxlen=50)
        self._last_extract = time.monotonic()
        self._last_extract_iteration = -1
        # extraction hand-off: one pending job (newest wins), a condition for waiters
        self._extract_cv = threading.Condition()
        self._extract_job: _ExtractJob | None = None
        self._extract_busy = False
        self._requests = 0           # extraction requests made
        self._requests_served = 0    # ... covered by a finished extraction
        self._requests_queued = 0    # ... covered by a queued or running extraction
        self._seq = 0
        self._latest: ObjectsResult | None = None
        self._threads = [threading.Thread(target=self._train_loop, name="mapping_trainer", daemon=True),
                         threading.Thread(target=self._extract_loop, name="mapping_extractor",
                                          daemon=True)]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._extract_cv:
            self._extract_cv.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=timeout)

    # ------------------------------------------------------------------ inputs
    def put(self, frame: Frame) -> None:
        with self._queue_lock:
            if len(self._queue) == self._queue.maxlen:
                self.counters.inc("dropped_queue_full")
            self._queue.append(frame)
        self.counters.inc("frames_enqueued")
        self._wake.set()

    def queue_length(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    # ------------------------------------------------------------------ cross-thread access
    def submit(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future:
        """Run ``fn(trainer_or_None)`` on the trainer thread; a Future of its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._stop.is_set() or not self._threads[0].is_alive():
            future.set_exception(RuntimeError("the trainer thread is not running"))
            return future
        self._commands.append((fn, future))
        self._wake.set()
        return future

    @property
    def latest_result(self) -> ObjectsResult | None:
        with self._extract_cv:
            return self._latest

    def stats(self) -> dict[str, Any]:
        with self._state_lock:
            return dict(self._stats, losses=dict(self._stats["losses"]))

    @property
    def has_model(self) -> bool:
        return self._trainer is not None

    def reset(self) -> concurrent.futures.Future:
        """A new model with :attr:`config` (lazily, from the next frames); ids keep counting."""
        def do(_trainer):
            self._trainer = None
            self._bootstrap = []
            self._last_extract_iteration = -1
            with self._state_lock:
                self._stats.update(iteration=0, losses={}, views=0, it_per_s=0.0,
                                   state="waiting_for_frames", bounds_m=None)
            self._rate_window.clear()
            return True
        return self.submit(do)

    def apply_live(self, config: Config) -> concurrent.futures.Future:
        """Loss weights and learning rate of ``config`` into the running trainer."""
        def do(trainer):
            if trainer is None:
                return False
            _apply_live_config(trainer, config)
            return True
        return self.submit(do)

    def extract_now(self, timeout: float | None = None) -> ObjectsResult:
        """Snapshot and extract now; blocks until done. RuntimeError when there is no model."""
        with self._extract_cv:
            self._requests += 1
            wanted = self._requests
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._extract_cv:
            while self._requests_served < wanted:
                if self._stop.is_set():
                    raise RuntimeError("the node is shutting down")
                if self._trainer is None or not self._trainer.views:
                    self._requests_served = max(self._requests_served, wanted)
                    raise RuntimeError(self._no_model_reason())
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("extraction did not finish in time")
                self._extract_cv.wait(0.1 if left is None else min(0.1, left))
            assert self._latest is not None
            return self._latest

    def _no_model_reason(self) -> str:
        if self.bounds_m is None:
            return (f"no model yet: waiting for frames ({len(self._bootstrap)} of "
                    f"{self.bootstrap_frames} needed to estimate the scene bounds)")
        return "no model yet: waiting for frames"

    def save(self, out_dir: Path, *, timeout: float = 120.0) -> Path:
        """Checkpoint + extraction + meshes/objects.json/config.yaml/map.json into ``out_dir``.

        From any thread while the worker runs; after :meth:`stop` it works inline."""
        running = self._threads[0].is_alive()

        def grab(trainer):
            if trainer is None:
                raise RuntimeError(self._no_model_reason())
            out_dir.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(out_dir / "checkpoint.pt")
            return trainer.snapshot(), _view_summaries(trainer), str(trainer.device)

        if running:
            snapshot, views, device = self.submit(grab).result(timeout=timeout)
            result = self._extract_via_thread(snapshot, views, device, timeout)
        else:
            snapshot, views, device = grab(self._trainer)
            result = self._extract(snapshot, views, device, self.now_ns())
        return self._write_map(out_dir, result, snapshot)

    # ------------------------------------------------------------------ trainer thread
    def _train_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_commands()
                self._drain()
                trainer = self._trainer
                if trainer is not None and trainer.views:
                    losses = trainer.step()
                    self._record_step(trainer, losses)
                    self._maybe_extract(trainer)
                else:
                    self._wake.wait(0.05)
                    self._wake.clear()
            except Exception as exc:  # the thread must survive anything; nothing learned is lost
                self.counters.inc("trainer_errors")
                self.log("error", f"trainer thread: {type(exc).__name__}: {exc}")
                self._stop.wait(0.2)
        self._run_commands(cancel=True)

    def _run_commands(self, cancel: bool = False) -> None:
        while self._commands:
            fn, future = self._commands.popleft()
            if cancel:
                future.set_exception(RuntimeError("the node is shutting down"))
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(self._trainer))
            except BaseException as exc:  # delivered to the caller
                future.set_exception(exc)

    def _drain(self) -> None:
        while True:
            with self._queue_lock:
                if not self._queue:
                    return
                frame = self._queue.popleft()
            if self._trainer is None:
                self._bootstrap_with(frame)
            else:
                self._add(frame)

    def _bootstrap_with(self, frame: Frame) -> None:
        if self.bounds_m is None:
            dc = self.config.data
            if frame.depth_m is not None and not np.any((frame.depth_m >= dc.depth_min_m)
                                                        & (frame.depth_m <= dc.depth_max_m)):
                self.counters.inc("frames_bootstrap_skipped")
                return
            self._bootstrap.append(frame)
            with self._state_lock:
                self._stats["state"] = f"estimating_bounds ({len(self._bootstrap)}/{self.bootstrap_frames})"
            if len(self._bootstrap) < self.bootstrap_frames:
                return
            dc = self.config.data
            bounds = estimate_bounds(self._bootstrap, depth_min_m=dc.depth_min_m,
                                     depth_max_m=dc.depth_max_m)
        else:
            self._bootstrap.append(frame)
            bounds = self.bounds_m
        from clusteringsdf_core.trainer import Trainer

        frames, self._bootstrap = self._bootstrap, []
        self._trainer = Trainer(self.config, bounds, classes=self.classes)
        with self._state_lock:
            self._stats.update(state="training", bounds_m=np.asarray(bounds).tolist())
        self.log("info", f"model created on {self._trainer.device} with scene bounds "
                         f"{np.round(bounds, 2).tolist()} m")
        for f in frames:
            self._add(f)

    def _add(self, frame: Frame) -> None:
        try:
            kept = self._trainer.add_frame(frame)
        except ValueError as exc:
            self.counters.inc("rejected_by_trainer")
            self.log("warn", f"frame at {frame.stamp_s:.3f} s refused by the trainer: {exc}")
            return
        self.counters.inc("frames_kept" if kept else "frames_not_keyframe")

    def _record_step(self, trainer, losses: dict[str, float]) -> None:
        now = time.monotonic()
        self._rate_window.append((now, trainer.iteration))
        t0, i0 = self._rate_window[0]
        rate = (trainer.iteration - i0) / (now - t0) if now > t0 else 0.0
        with self._state_lock:
            self._stats.update(iteration=trainer.iteration, losses=dict(losses),
                               views=len(trainer.views), it_per_s=rate, state="training")

    def _maybe_extract(self, trainer) -> None:
        with self._extract_cv:
            requested = self._requests > self._requests_queued
            busy = self._extract_busy or self._extract_job is not None
            covers = self._requests
            sync_job_waiting = self._extract_job is not None and self._extract_job.waited_on
        due = (time.monotonic() - self._last_extract >= self.extract_period_s
               and trainer.iteration != self._last_extract_iteration and not busy)
        if sync_job_waiting or not (requested or due):
            return
        job = _ExtractJob(trainer.snapshot(), _view_summaries(trainer), str(trainer.device), covers, None,
                          requested)
        self._last_extract = time.monotonic()
        self._last_extract_iteration = trainer.iteration
        with self._extract_cv:
            if self._extract_job is not None and self._extract_job.waited_on:
                return                   # a save's extraction came in meanwhile: it goes first
            self._extract_job = job      # a newer job replaces one not started yet
            self._requests_queued = max(self._requests_queued, covers)
            self._extract_cv.notify_all()

    # ------------------------------------------------------------------ extractor thread
    def _extract_via_thread(self, snapshot, views, device, timeout: float) -> ObjectsResult:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._extract_cv:
            while self._extract_job is not None and self._extract_job.waited_on:
                self._extract_cv.wait(0.1)   # another caller's synchronous job goes first
            replaced = self._extract_job     # a periodic job not started yet: this one covers it
            self._extract_job = _ExtractJob(snapshot, views, device,
                                            None if replaced is None else replaced.covers, future, True)
            self._extract_cv.notify_all()
        return future.result(timeout=timeout)

    def _extract_loop(self) -> None:
        while True:
            with self._extract_cv:
                while self._extract_job is None and not self._stop.is_set():
                    self._extract_cv.wait(0.5)
                if self._stop.is_set():
                    if self._extract_job is not None and self._extract_job.waited_on:
                        self._extract_job.future.set_exception(RuntimeError("the node is shutting down"))
                    self._extract_job = None
                    return
                job, self._extract_job = self._extract_job, None
                self._extract_busy = True
            try:
                # Periodic extractions and extract_now at the live resolution, saves at
                # the full one; requested ones publish new objects at once.
                result = self._extract(job.snapshot, job.views, job.device, self.now_ns(),
                                       live=not job.waited_on, confirm_new=job.requested)
                if job.future is not None:
                    job.future.set_result(result)
            except Exception as exc:
                self.counters.inc("trainer_errors")
                self.log("error", f"extraction failed: {type(exc).__name__}: {exc}")
                if job.future is not None:
                    job.future.set_exception(exc)
            finally:
                with self._extract_cv:
                    self._extract_busy = False
                    if job.covers is not None:
                        self._requests_served = max(self._requests_served, job.covers)
                    self._extract_cv.notify_all()

    def _extract(self, snapshot, views, device: str, stamp_ns: int, *, live: bool = False,
                 confirm_new: bool = True) -> ObjectsResult:
        from clusteringsdf_core.extract import extract_objects

        started = time.perf_counter()
        model = snapshot.model(device)
        ecfg = snapshot.config.extract
        extracted = extract_objects(model, ecfg, snapshot.channel_classes, snapshot.channel_confidence,
                                    resolution=ecfg.live_resolution if live else ecfg.resolution)
        # Saves and requested extractions publish what the model has now; periodic ones
        # wait for repeated sightings before a new object gets an id (ObjectTracker).
        tracked = self.tracker.update(extracted, stamp=stamp_ns / _NS, confirm_new=confirm_new)
        tracked = [dataclasses.replace(t, num_observations=count_observations(
            t.object.mesh.vertices, views)) for t in tracked]
        with self._extract_cv:
            self._seq += 1
            result = ObjectsResult(seq=self._seq, iteration=snapshot.iteration, stamp_ns=stamp_ns,
                                   objects=tuple(tracked), seconds=time.perf_counter() - started)
            self._latest = result
        self.counters.inc("extractions")
        return result

    def _write_map(self, out_dir: Path, result: ObjectsResult, snapshot) -> Path:
        from clusteringsdf_core.extract import export_objects

        export_objects(list(result.objects), out_dir, self.classes,
                       mesh_format=snapshot.config.extract.export_format,
                       iteration=snapshot.iteration)
        save_yaml(snapshot.config, out_dir / "config.yaml")
        stats = self.stats()
        (out_dir / "map.json").write_text(json.dumps({
            "iteration": snapshot.iteration, "stamp_ns": result.stamp_ns,
            "bounds_m": stats.get("bounds_m"), "views": stats.get("views"),
            "objects": [t.id for t in result.objects], "counters": self.counters.snapshot(),
        }, indent=1))
        return out_dir


def _apply_live_config(trainer, config: Config) -> None:
    """Replace the trainer's loss weights and learning rate (optimizer groups too)."""
    trainer.update_live(config)


def _view_summaries(trainer, max_side: int = 64) -> list[ViewSummary]:
    out = []
    for view in trainer.views:
        stride = max(1, math.ceil(max(view.width, view.height) / max_side))
        depth = None
        if view.depth_m is not None:
            depth = view.depth_m.reshape(view.height, view.width)[::stride, ::stride].cpu().numpy()
        out.append(ViewSummary(view.K.cpu().numpy().astype(np.float64),
                               view.T_world_cam.cpu().numpy().astype(np.float64),
                               view.width, view.height, depth, stride))
    return out


# =========================================================================== the node


def _ros_help(name: str) -> str:
    for f in dataclasses.fields(RosConfig):
        if f.name == name:
            return f.metadata["help"]
    raise ConfigError(f"ros.{name}", "unknown field")


def _plain(value: Any) -> Any:
    """Parameter values as the config tree wants them (arrays -> lists)."""
    if isinstance(value, (array.array, tuple, np.ndarray)):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    return value


def _parse_bounds(value: Any) -> np.ndarray | None:
    values = [] if value is None else list(_plain(value))
    if not values:
        return None
    b = np.asarray(values, dtype=np.float64)
    if b.shape != (6,) or not np.all(np.isfinite(b)) or np.any(b[:3] >= b[3:]):
        raise ConfigError("ros.bounds_m", "expected [] or six finite numbers "
                          f"[xmin, ymin, zmin, xmax, ymax, zmax] with min < max, got {values}")
    return b.reshape(2, 3)


def _build_configs(flat: dict[str, Any]) -> tuple[Config, RosConfig, np.ndarray | None]:
    core = {k: _plain(v) for k, v in flat.items() if not k.startswith("ros.")}
    ros = {k[4:]: _plain(v) for k, v in flat.items() if k.startswith("ros.") and k != "ros.bounds_m"}
    config = Config.from_dict(unflatten(core))
    return config, build_section(RosConfig, ros), _parse_bounds(flat.get("ros.bounds_m"))


class MappingNode(Node):
    """The mapping node (see the module docstring). ``**kwargs`` go to ``rclpy.node.Node``
    (``context``, ``parameter_overrides``, ...)."""

    def __init__(self, **kwargs):
        super().__init__("mapping_node", **kwargs)
        self._declare_parameters()
        self.config, self.ros, bounds = _build_configs(self._flat)  # ConfigError: refuse to start
        self.classes = SCANNET_REDUCED
        self.counters = Counters()
        # Wall time of the input callbacks (synchronised sets incl. conversion; poses).
        self.callback_times = {"synced": CallbackTimes(), "pose": CallbackTimes()}
        self._loggers: dict[str, Any] = {}
        self.worker = MappingWorker(self.config, classes=self.classes, bounds_m=bounds,
                                    queue_size=self.ros.frame_queue_size,
                                    extract_period_s=self.ros.extract_period_s,
                                    counters=self.counters,
                                    now_ns=lambda: self.get_clock().now().nanoseconds,
                                    log=self._worker_log)
        self.pending_reset: set[str] = set()     # changed parameters waiting for ~/reset
        self.pending_restart: set[str] = set()   # changed ros.* parameters waiting for a restart
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._inputs_group = MutuallyExclusiveCallbackGroup()
        self._timers_group = MutuallyExclusiveCallbackGroup()
        self._services_group = MutuallyExclusiveCallbackGroup()
        self._lock = threading.Lock()      # pose history + pending sets + stamps
        self._frame_index = 0
        self._last_set_ns: int | None = None
        self._pending: collections.deque = collections.deque()   # (wall time, msgs) awaiting a pose
        self.poses = PoseHistory(max_len=max(50, 10 * self.ros.sync_queue_size))
        self._setup_inputs()

        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.objects_pub = self.create_publisher(ObjectArray, self.ros.objects_topic, latched)
        self.markers_pub = self.create_publisher(MarkerArray, "~/markers", latched)
        self.status_pub = self.create_publisher(DiagnosticArray, "~/status", 10)
        self._published: tuple[int, ObjectArray, MarkerArray] | None = None
        self._publish_timer = self.create_timer(self.ros.publish_period_s, self._publish_objects,
                                                callback_group=self._timers_group)
        self._status_timer = self.create_timer(self.ros.status_period_s, self._publish_status,
                                               callback_group=self._timers_group)
        self._status_last: tuple[float, int] | None = None
        self.create_service(Trigger, "~/save_map", self._on_save_map,
                            callback_group=self._services_group)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._services_group)
        self.create_service(Trigger, "~/extract_now", self._on_extract_now,
                            callback_group=self._services_group)
        self._shut = False
        self.worker.start()
        self.get_logger().info(
            f"mapping: {', '.join(self._input_topics)}; pose from {self.pose_source}; "
            f"objects on {self.objects_pub.topic_name}")

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        defaults = {**flatten(preset("cpu")),
                    **{f"ros.{k}": v for k, v in dataclasses.asdict(RosConfig()).items()}}
        for name, value in defaults.items():
            section, _, field_name = name.partition(".")
            help_text = _ros_help(field_name) if section == "ros" else field_help(name)
            self.declare_parameter(name, value, ParameterDescriptor(description=help_text))
        # An empty list would be typed BYTE_ARRAY: declare the double array by type.
        self.declare_parameter("ros.bounds_m", Parameter.Type.DOUBLE_ARRAY, ParameterDescriptor(
            description="scene bounds [xmin, ymin, zmin, xmax, ymax, zmax] in metres, map frame; "
                        f"unset/empty = from the depth of the first {BOOTSTRAP_FRAMES} frames "
                        f"plus {BOUNDS_MARGIN_XY_M} m horizontally and {BOUNDS_MARGIN_Z_M} m "
                        "vertically"))
        self._flat = {name: self.get_parameter(name).value for name in defaults}
        self._flat["ros.bounds_m"] = self._bounds_value()

    def _bounds_value(self):
        try:
            return self.get_parameter("ros.bounds_m").value
        except Exception:  # declared by type and never set
            return None

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        flat = dict(self._flat)
        for p in params:
            if p.name not in flat:
                continue
            flat[p.name] = p.value
        try:
            _build_configs(flat)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        notes = []
        for p in params:
            if p.name not in self._flat:
                continue
            if p.name.startswith(_LIVE_SECTIONS) or p.name in _LIVE_FIELDS + _LIVE_ROS_FIELDS:
                notes.append(f"{p.name}: applied now")
            elif p.name.startswith("ros.") and p.name != "ros.bounds_m":
                notes.append(f"{p.name}: takes effect when the node restarts")
            else:
                notes.append(f"{p.name}: takes effect at the next ~/reset")
        # rclcpp returns this reason on success; rclpy drops it (the post-set callback logs
        # it, and ~/status lists pending_reset / pending_restart).
        return SetParametersResult(successful=True, reason="; ".join(notes))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        changed = [p for p in params if p.name in self._flat]
        for p in changed:
            self._flat[p.name] = p.value
        if not changed:
            return
        self.config, _, bounds = _build_configs(self._flat)
        self.worker.config = self.config
        self.worker.bounds_m = bounds
        names = {p.name for p in changed}
        restart = {n for n in names if n.startswith("ros.") and n not in _LIVE_ROS_FIELDS
                   and n != "ros.bounds_m"}
        self.pending_restart |= restart
        self.pending_reset |= {n for n in names - restart
                               if not (n.startswith(_LIVE_SECTIONS)
                                       or n in _LIVE_FIELDS + _LIVE_ROS_FIELDS)}
        if "ros.extract_period_s" in names:
            self.worker.extract_period_s = float(self._flat["ros.extract_period_s"])
        if any(n.startswith(_LIVE_SECTIONS) or n in _LIVE_FIELDS for n in names):
            self.worker.apply_live(self.config)
        if names & self.pending_reset:
            self.get_logger().warning(f"{', '.join(sorted(names & self.pending_reset))} changed: "
                                      "takes effect at the next ~/reset")
        if restart:
            self.get_logger().warning(f"{', '.join(sorted(restart))} changed: takes effect when "
                                      "the node restarts")

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
        if ros.pose_source == "tf":
            try:
                import tf2_ros
                self.tf_buffer = tf2_ros.Buffer()
                self._tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)
            except ImportError as exc:
                self.tf_unavailable_reason = str(exc)
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

    def _worker_log(self, level: str, message: str) -> None:
        logger = self.get_logger().get_child("trainer")
        if level == "info":
            self.get_logger().info(message)
        elif level == "error":
            logger.error(message, throttle_duration_sec=LOG_THROTTLE_S)
        else:
            logger.warning(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _on_pose_stamped(self, msg) -> None:
        self._on_pose(msg.header, lambda: conv.pose_stamped_to_matrix(msg))

    def _on_odometry(self, msg) -> None:
        self._on_pose(msg.header, lambda: conv.odometry_to_matrix(msg))

    def _on_pose(self, header, to_matrix: Callable[[], np.ndarray]) -> None:
        started = time.perf_counter()
        try:
            self._handle_pose(header, to_matrix)
        finally:
            self.callback_times["pose"].add(time.perf_counter() - started)

    def _handle_pose(self, header, to_matrix: Callable[[], np.ndarray]) -> None:
        if header.frame_id and header.frame_id.lstrip("/") != self.ros.map_frame.lstrip("/"):
            self._bad_input("pose_wrong_frame", f"pose is in frame '{header.frame_id}', expected "
                            f"'{self.ros.map_frame}' (ros.map_frame)")
            return
        try:
            T = check_pose(to_matrix())
        except ValueError as exc:
            self._bad_input("bad_pose", f"camera pose dropped: {exc}")
            return
        stamp_ns = conv.stamp_to_ns(header.stamp)
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
        stamp_ns = conv.stamp_to_ns(msgs[0].header.stamp)
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
                jumped = (last, len(self._pending),
                          self.poses.drop_newer_than(stamp_ns + jump_ns))
                self._pending.clear()
            self._last_set_ns = stamp_ns
        if jumped is not None:
            self._time_jumped_back(stamp_ns, *jumped)
        if self.pose_source == "tf":
            self._convert_and_enqueue(msgs, self._tf_pose(msgs[0], stamp_ns))
            return
        with self._lock:
            self._pending.append((time.monotonic(), stamp_ns, msgs))
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

    def _tf_pose(self, rgb_msg, stamp_ns: int) -> np.ndarray | None:
        from rclpy.duration import Duration as RclDuration
        from rclpy.time import Time

        frame = self.ros.camera_frame or rgb_msg.header.frame_id
        try:
            transform = self.tf_buffer.lookup_transform(
                self.ros.map_frame, frame, Time(nanoseconds=stamp_ns),
                timeout=RclDuration(nanoseconds=int(self.ros.tf_timeout_s * _NS)))
            return conv.transform_to_matrix(transform)
        except ValueError as exc:
            self._bad_input("bad_pose", f"TF pose of '{frame}': {exc}")
        except Exception as exc:  # tf2 lookup, connectivity, extrapolation errors
            self._bad_input("pose_unmatched", f"no TF {self.ros.map_frame} -> '{frame}' at "
                            f"{stamp_ns / _NS:.3f} s: {exc}")
        return None

    def _resolve_pending(self, *, expire: bool = False) -> None:
        """Sets waiting for a pose: matched once a pose at/after their stamp exists, dropped
        when no pose matches then, or after POSE_WAIT_S (``expire``) / queue overflow."""
        slop_ns = int(round(self.ros.sync_slop_s * _NS))
        ready = []
        with self._lock:
            now = time.monotonic()
            newest = self.poses.newest_ns
            keep: collections.deque = collections.deque()
            excess = len(self._pending) - self.ros.sync_queue_size   # oldest forced out
            for i, (arrived, stamp_ns, msgs) in enumerate(self._pending):
                waited_out = (expire and now - arrived > POSE_WAIT_S) or i < excess
                if (newest is not None and newest >= stamp_ns) or waited_out:
                    ready.append((stamp_ns, msgs, self.poses.lookup(stamp_ns, slop_ns)))
                else:
                    keep.append((arrived, stamp_ns, msgs))
            self._pending = keep
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
                max_labels=self.config.model.num_channels - 1, index=index,
                expect_depth="depth" in parts)
        except InputError as exc:
            self._bad_input(exc.counter, f"input set dropped: {exc}")
            return
        if notes.labels_merged:
            self._bad_input("labels_merged", f"{notes.labels_merged} labels more than the "
                            f"{self.config.model.num_channels - 1} object channels: the smallest "
                            "were merged into 0 (frame kept)")
        if notes.empty_labels:
            self._bad_input("empty_labels", "frame without instance labels (kept as an empty frame)")
        if notes.depth_missing:
            self._bad_input("depth_missing", "input set without depth (kept, RGB only)")
        self.worker.put(frame)

    # ------------------------------------------------------------------ outputs
    def _publish_objects(self) -> None:
        result = self.worker.latest_result
        if result is None:
            return
        if self._published is None or self._published[0] != result.seq:
            try:
                msg = objects_to_msg(result, self.classes, self.ros.map_frame)
                self._published = (result.seq, msg, objects_to_markers(msg))
            except Exception as exc:
                self.counters.inc("trainer_errors")
                self.get_logger().error(f"could not build the object messages: {exc}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
                return
        _, msg, markers = self._published
        self.objects_pub.publish(msg)
        self.markers_pub.publish(markers)

    def status_values(self) -> dict[str, Any]:
        """Everything ``~/status`` reports, as a flat dictionary."""
        stats = self.worker.stats()
        sync = self.sync.sync.stats if self.sync.sync is not None else None
        if sync is not None:
            self.counters.set("sync_waiting", sync.total("dropped_overflow")
                              + sync.total("dropped_unmatched"))
            self.counters.set("sync_late", sync.total("dropped_late"))
        values: dict[str, Any] = {
            "state": stats["state"], "iteration": stats["iteration"],
            "it_per_s": round(stats["it_per_s"], 3), "frames_buffered": stats["views"],
            "frames_queued": self.worker.queue_length(), "pose_source": self.pose_source,
            "pending_reset": ",".join(sorted(self.pending_reset)),
            "pending_restart": ",".join(sorted(self.pending_restart)),
        }
        if sync is not None:   # per input: what arrived, what made it into a set
            for topic, t in sync.per_topic.items():
                values[f"received {topic}"] = t.received
        values.update({f"loss.{k}": v for k, v in stats["losses"].items()})
        values.update(self.counters.snapshot())
        for path, times in self.callback_times.items():  # callback_synced_p99_ms, ...
            values.update({f"callback_{path}_{k}": v for k, v in times.summary().items()})
        latest = self.worker.latest_result
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
        values = self.status_values()
        status = DiagnosticStatus(name=f"{self.get_name()}: ClusteringSDF mapping",
                                  hardware_id=str(self.config.trainer.device))
        if values["trainer_errors"]:
            status.level, status.message = DiagnosticStatus.WARN, "training (errors occurred)"
        elif values["state"] == "training":
            status.level, status.message = DiagnosticStatus.OK, "training"
        else:
            status.level, status.message = DiagnosticStatus.WARN, str(values["state"])
        status.values = [KeyValue(key=k, value=(f"{v:.6g}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    # ------------------------------------------------------------------ services
    def _output_folder(self) -> Path:
        root = Path(os.path.expanduser(os.path.expandvars(self.ros.output_dir)))
        base = root / time.strftime("map_%Y%m%d_%H%M%S")
        path, n = base, 1
        while path.exists():
            path, n = Path(f"{base}_{n}"), n + 1
        return path

    def save_map(self) -> Path:
        return self.worker.save(self._output_folder())

    def _on_save_map(self, request, response):
        try:
            path = self.save_map()
            response.success, response.message = True, str(path)
            self.get_logger().info(f"map saved to {path}")
        except Exception as exc:
            response.success, response.message = False, f"map not saved: {exc}"
        return response

    def _on_reset(self, request, response):
        try:
            self.worker.reset().result(timeout=30.0)
            self.pending_reset.clear()
            with self._lock:
                self._last_set_ns = None
            response.success = True
            response.message = ("model reset: a new one is trained from the next frames with the "
                                "current parameters; object ids keep counting")
        except Exception as exc:
            response.success, response.message = False, f"reset failed: {exc}"
        return response

    def _on_extract_now(self, request, response):
        try:
            result = self.worker.extract_now(timeout=120.0)
            response.success = True
            response.message = (f"{len(result.objects)} objects at iteration {result.iteration} "
                                f"(ids {[t.id for t in result.objects]})")
            self._publish_objects()
        except Exception as exc:
            response.success, response.message = False, str(exc)
        return response

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the threads; save the map when ros.save_on_shutdown and there is a model."""
        if self._shut:
            return
        self._shut = True
        # Save first: saving runs on the trainer thread, which stop() ends.
        if self.ros.save_on_shutdown and self.worker.has_model:
            # After SIGTERM the context is shut down and rosout is gone: say it on stderr too.
            try:
                path = self.worker.save(self._output_folder())
                print(f"mapping_node: map saved to {path}", file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"mapping_node: could not save the map on shutdown: {exc!r}", file=sys.stderr,
                      flush=True)
        elif self.ros.save_on_shutdown:
            print("mapping_node: no model yet (too few frames): nothing to save", file=sys.stderr, flush=True)
        self.worker.stop()

    def destroy_node(self):
        self.shutdown()
        return super().destroy_node()


def main(args=None) -> int:
    """Run the mapping node until Ctrl-C or SIGTERM; 0 on a clean stop, 1 on an error."""
    # Timers, services and inputs have their own callback groups: 4 threads keep the
    # timers and services from waiting for the image callbacks (and vice versa).
    return spin_node(MappingNode, "mapping_node", num_threads=4, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
