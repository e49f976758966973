"""Camera poses in the map frame from the poses robots publish (REP 105), without
blocking an input callback on TF.

A pose message gives ``T_F_B``: body frame ``B`` (an Odometry's ``child_frame_id``,
e.g. ``base_link``; the camera itself for a PoseStamped or an Odometry without one) in
frame ``F`` (its ``header.frame_id``, e.g. ``odom``). The camera optical frame ``C`` in
the map frame ``M`` is then ``T_M_C = T_M_F · T_F_B · T_B_C`` where

- ``T_M_F`` is the identity when ``F`` is the map frame (or empty), else TF ``M <- F``
  at the pose's stamp;
- ``T_B_C`` is ``ros.camera_extrinsic`` when set, the identity when ``B`` is the camera
  frame (or empty), else TF ``B <- C`` (static: looked up once, then cached).

Every lookup asks TF for what it has *now* (zero timeout): one that cannot be answered
raises :class:`PoseFrameError`, and the node drops that pose and counts it. Synchronised
sets of ``ros.pose_source: tf`` whose transform has not arrived yet wait in a
:class:`~clusteringsdf_core.online.poses.PendingSets` and are retried from a timer,
never inside the input callback.

``lookup(target, source, stamp_ns)`` is the only TF access (``stamp_ns`` None = the
latest): :class:`TfLookup` wraps a ``tf2_ros.Buffer``; tests pass any callable.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clusteringsdf_ros import transforms as tfm

__all__ = ["PoseFrameError", "FrameChain", "TfLookup"]

Lookup = Callable[[str, str, "int | None"], np.ndarray]


class PoseFrameError(LookupError):
    """A pose could not be put in the map frame (yet); ``counter`` names the status
    counter. A LookupError, as :class:`~clusteringsdf_core.online.poses.PendingSets`
    expects of a pose not known yet."""

    def __init__(self, counter: str, message: str):
        self.counter = counter
        super().__init__(message)


def _same(a: str, b: str) -> bool:
    return a.lstrip("/") == b.lstrip("/")


class FrameChain:
    """``T_M_C`` of pose messages (module docstring). ``lookup`` is None where there is
    no TF (no ``tf2_ros``): then only poses in the map frame, of the camera or with
    ``extrinsic``, can be used, and the others say how to make them usable."""

    def __init__(self, map_frame: str, *, camera_frame: str = "", extrinsic: np.ndarray | None = None,
                 lookup: Lookup | None = None):
        self.map_frame = map_frame
        self.camera_frame = camera_frame       # '' = the images' frame, once one came
        self.extrinsic = extrinsic
        self.lookup = lookup
        self._static: dict[tuple[str, str], np.ndarray] = {}

    def see_image_frame(self, frame_id: str) -> None:
        """The images' ``header.frame_id``: the camera frame when ``ros.camera_frame`` is ''."""
        if frame_id and not self.camera_frame:
            self.camera_frame = frame_id

    def camera_in_map(self, T_F_B: np.ndarray, frame_id: str, child_frame_id: str, stamp_ns: int) -> np.ndarray:
        """``T_M_C`` of a pose ``T_F_B`` (``frame_id`` F, ``child_frame_id`` B) at ``stamp_ns``."""
        T_B_C = self._body_to_camera(child_frame_id)
        if not frame_id or _same(frame_id, self.map_frame):
            return T_F_B @ T_B_C
        T_M_F = self._tf(self.map_frame, frame_id, stamp_ns, "pose_wrong_frame",
                         f"pose is in frame '{frame_id}', not ros.map_frame '{self.map_frame}'",
                         f"set ros.map_frame: {frame_id} to map in that frame")
        return T_M_F @ T_F_B @ T_B_C

    def camera_from_tf(self, camera_frame: str, stamp_ns: int) -> np.ndarray:
        """``T_M_C`` from TF alone (``ros.pose_source: tf``) at ``stamp_ns``."""
        return self._tf(self.map_frame, camera_frame, stamp_ns, "pose_unmatched",
                        f"no pose of the camera '{camera_frame}' at {stamp_ns / 1e9:.3f} s",
                        "publish TF or choose another ros.pose_source")

    def _body_to_camera(self, body: str) -> np.ndarray:
        if self.extrinsic is not None:
            return self.extrinsic
        if not body or (self.camera_frame and _same(body, self.camera_frame)):
            return np.eye(4)
        if not self.camera_frame:
            raise PoseFrameError("pose_no_extrinsic", f"pose of body frame '{body}' before any image "
                                 "named the camera frame (set ros.camera_frame or ros.camera_extrinsic)")
        key = (body, self.camera_frame)
        if key not in self._static:
            self._static[key] = self._tf(body, self.camera_frame, None, "pose_no_extrinsic",
                                         f"pose is of frame '{body}', not of the camera '{self.camera_frame}'",
                                         "set ros.camera_extrinsic to the camera's pose in that frame")
        return self._static[key]

    def _tf(self, target: str, source: str, stamp_ns: int | None, counter: str, what: str,
            remedy: str) -> np.ndarray:
        if self.lookup is None:
            raise PoseFrameError(counter, f"{what}, and there is no TF here to relate them: {remedy}")
        try:
            return self.lookup(target, source, stamp_ns)
        except LookupError as exc:
            raise PoseFrameError(counter, f"{what}, and TF has no {target} <- {source} yet ({exc})") from None


class TfLookup:
    """``lookup`` over a ``tf2_ros.Buffer``: zero timeout, so it never waits."""

    def __init__(self, buffer):
        self.buffer = buffer

    def __call__(self, target: str, source: str, stamp_ns: int | None) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        when = Time() if stamp_ns is None else Time(nanoseconds=int(stamp_ns))
        try:
            transform = self.buffer.lookup_transform(target, source, when, timeout=Duration())
        except Exception as exc:   # tf2 lookup, connectivity and extrapolation errors
            raise LookupError(str(exc) or type(exc).__name__) from None
        return tfm.transform_to_matrix(transform)
