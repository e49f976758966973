"""Input messages -> core frames: decoding, validation, label compaction, callback timing.

:func:`frame_from_messages` turns one synchronised set of messages and a camera pose
into a :class:`~clusteringsdf_core.data.frame.Frame`; a set that cannot be used raises
:class:`InputError`, which names the status counter it counts under.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from clusteringsdf_core.data.frame import Frame, check_pose
from clusteringsdf_core.online.labels import compact_labels
from clusteringsdf_ros import conversions as conv
from clusteringsdf_ros import transforms as tfm

__all__ = ["InputError", "FrameNotes", "frame_from_messages", "CallbackTimes", "INPUT_COUNTERS",
           "CALLBACK_TIME_WINDOW"]

#: Callback durations kept per input path for the status statistics.
CALLBACK_TIME_WINDOW = 1000

#: The node's input counters, with what they count (the engine has its own).
INPUT_COUNTERS: dict[str, str] = {
    "sets_received": "synchronised input sets received",
    "bad_encoding": "images with an encoding that input does not accept",
    "bad_image": "images whose layout (step, size) is broken",
    "bad_camera_info": "camera_info messages that give no usable pinhole intrinsics",
    "size_mismatch": "sets whose images / camera_info disagree in size",
    "bad_labels": "label images with negative ids, or semantic ids outside the class table",
    "bad_pose": "poses with NaN/inf values or a non-rigid rotation",
    "pose_wrong_frame": "poses in a frame other than ros.map_frame that TF could not relate to it",
    "pose_no_extrinsic": "poses of a body frame (Odometry child_frame_id) other than the camera's, "
                         "with no ros.camera_extrinsic and no TF body <- camera",
    "pose_unmatched": "sets dropped: no pose within the slop of the image stamp",
    "out_of_order": "sets older than the last accepted set (by at most TIME_JUMP_BACK_S)",
    "time_jump_back": "input stamps that jumped back more than TIME_JUMP_BACK_S (bag loop): "
                      "synchroniser, poses and pending sets cleared, the new set accepted",
    "labels_over_budget": "frames with more labels than object channels (the smallest labels become "
                          "unknown: ignored by the losses, not background)",
    "empty_labels": "frames without any instance label (kept: key-frame rules handle them)",
    "depth_missing": "sets that came without depth although a depth topic is set",
    "sync_waiting": "messages that waited in the synchroniser and never made a set",
    "sync_late": "messages older than what their topic already contributed",
}

_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
_LABEL_ENCODINGS = ("16UC1", "mono16", "32SC1", "mono8", "8UC1")
_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_CONFIDENCE_ENCODINGS = ("32FC1", "16UC1", "mono16", "mono8", "8UC1")


class InputError(ValueError):
    """A message set that cannot become a frame; ``counter`` names the status counter."""

    def __init__(self, counter: str, message: str):
        super().__init__(message)
        self.counter = counter


@dataclass(frozen=True)
class FrameNotes:
    """What :func:`frame_from_messages` changed or noticed in a usable frame."""

    labels_over_budget: int = 0   # labels beyond the object channels, made unknown (-1)
    empty_labels: bool = False
    depth_missing: bool = False


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




def frame_from_messages(rgb_msg, info_msg, instance_msg, T_world_cam: np.ndarray, *,
                        depth_msg=None, semantic_msg=None, confidence_msg=None,
                        max_labels: int | None = None, num_classes: int | None = None, index: int = 0,
                        depth_unit_m: float = 0.001, expect_depth: bool = False,
                        ) -> tuple[Frame, FrameNotes]:
    """A core :class:`Frame` from one synchronised set of messages and the camera pose.

    ``T_world_cam`` is the 4x4 pose of the camera optical frame in the map frame.
    Instance ids are renumbered 1..n per view (0 = no label); when a view has more
    than ``max_labels`` labels (the foreground channels) the smallest ones become
    unknown (-1, ignored by the losses) and the frame is kept
    (:attr:`FrameNotes.labels_over_budget`). An empty
    label map is kept too. Semantic ids must be below ``num_classes`` (the class
    table's length) when given. Raises :class:`InputError` (a ValueError naming the
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
        if num_classes is not None and semantic.size and int(semantic.max()) >= num_classes:
            raise InputError("bad_labels", f"semantic image has class id {int(semantic.max())}; the "
                             f"class table (ros.class_table) has ids 0..{num_classes - 1}")
    if confidence_msg is not None:
        confidence = _decode("confidence", confidence_msg, _CONFIDENCE_ENCODINGS,
                             conv.image_to_confidence)
        _same_size("confidence", confidence, width, height)
    try:
        T = check_pose(T_world_cam)
    except ValueError as exc:
        raise InputError("bad_pose", f"camera pose: {exc}") from None
    labels, over = compact_labels(instance, max_labels)
    frame = Frame(index=int(index), rgb=rgb, T_world_cam=T, intrinsics=intrinsics,
                  stamp_s=tfm.stamp_to_s(rgb_msg.header.stamp), depth_m=depth, instance=labels,
                  semantic=semantic, confidence=confidence)
    notes = FrameNotes(labels_over_budget=over, empty_labels=not bool((labels > 0).any()),
                       depth_missing=expect_depth and depth is None)
    return frame, notes

