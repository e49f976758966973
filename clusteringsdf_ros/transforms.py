"""Poses, quaternions and stamps <-> ROS messages.

Poses (``Pose``, ``PoseStamped``, ``Odometry``, ``Transform(Stamped)`` <-> 4x4)
    ``T`` maps points of the child frame (the pose's frame, e.g. the camera optical
    frame) into the parent frame (``header.frame_id``, e.g. ``map``).
    Quaternions go through tf_transformations where importable, else transforms3d.

Stamps (``builtin_interfaces/Time`` <-> int nanoseconds / float seconds).

Message classes are imported inside the builders, so the readers work (e.g. on
``rosbags`` messages) where no ROS message package is installed.
"""

from __future__ import annotations

import math

import numpy as np

from clusteringsdf_core.data.frame import check_pose

__all__ = [
    "QUATERNION_NORM_TOLERANCE", "header",
    # poses
    "quaternion_to_rotation", "rotation_to_quaternion", "pose_to_matrix",
    "pose_stamped_to_matrix", "odometry_to_matrix", "transform_to_matrix", "matrix_to_pose",
    "matrix_to_pose_stamped", "matrix_to_transform_stamped", "matrix_to_odometry",
    # stamps
    "stamp_to_ns", "stamp_to_s", "ns_to_stamp", "s_to_stamp",
]

#: Largest | |q| - 1 | accepted (and normalised away) in a pose's quaternion.
QUATERNION_NORM_TOLERANCE = 1e-2

_INT32_MAX = 2**31 - 1


def _tf_transformations():
    try:
        import tf_transformations
        return tf_transformations
    except ImportError:
        return None


def header(stamp_ns: int, frame_id: str):
    """A ``std_msgs/Header`` of ``stamp_ns`` (nanoseconds) and ``frame_id``."""
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


# --------------------------------------------------------------------------- quaternions, poses


def _unit_quaternion(x: float, y: float, z: float, w: float, *,
                     tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    q = np.array([x, y, z, w], dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion contains NaN or infinite values: {q.tolist()}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > tolerance:
        raise ValueError(f"quaternion (x, y, z, w) = {q.tolist()} has norm {norm:.6g}, not 1 "
                         f"(tolerance {tolerance}): not a rotation")
    return q / norm


def quaternion_to_rotation(x: float, y: float, z: float, w: float, *,
                           tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    """3x3 rotation of a quaternion in ROS order (x, y, z, w).

    A norm within ``tolerance`` of 1 is normalised; others raise ValueError.
    """
    q = _unit_quaternion(x, y, z, w, tolerance=tolerance)
    tft = _tf_transformations()
    if tft is not None:
        return np.asarray(tft.quaternion_matrix(q), dtype=np.float64)[:3, :3]
    from transforms3d.quaternions import quat2mat

    return quat2mat([q[3], q[0], q[1], q[2]])


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a 3x3 rotation, with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    tft = _tf_transformations()
    if tft is not None:
        T = np.eye(4)
        T[:3, :3] = R
        q = np.asarray(tft.quaternion_from_matrix(T), dtype=np.float64)
    else:
        from transforms3d.quaternions import mat2quat

        w, x, y, z = mat2quat(R)
        q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def _from_parts(translation, rotation, *, tolerance: float) -> np.ndarray:
    t = np.array([translation.x, translation.y, translation.z], dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"translation contains NaN or infinite values: {t.tolist()}")
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(rotation.x, rotation.y, rotation.z, rotation.w,
                                       tolerance=tolerance)
    T[:3, 3] = t
    return T


def pose_to_matrix(pose, *, tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    """4x4 float64 transform of a ``geometry_msgs/Pose`` (child -> parent)."""
    return _from_parts(pose.position, pose.orientation, tolerance=tolerance)


def pose_stamped_to_matrix(msg, *, tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    """4x4 pose of a ``PoseStamped`` in its ``header.frame_id``."""
    return pose_to_matrix(msg.pose, tolerance=tolerance)


def odometry_to_matrix(msg, *, tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    """4x4 pose of ``child_frame_id`` in ``header.frame_id`` of a ``nav_msgs/Odometry``."""
    return pose_to_matrix(msg.pose.pose, tolerance=tolerance)


def transform_to_matrix(msg, *, tolerance: float = QUATERNION_NORM_TOLERANCE) -> np.ndarray:
    """4x4 of a ``Transform`` or ``TransformStamped`` (child_frame_id -> header.frame_id)."""
    transform = getattr(msg, "transform", msg)
    return _from_parts(transform.translation, transform.rotation, tolerance=tolerance)


def matrix_to_pose(T: np.ndarray):
    """A ``geometry_msgs/Pose`` of a rigid 4x4 transform (ValueError if not rigid/finite)."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    T = check_pose(T)
    x, y, z, w = rotation_to_quaternion(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def matrix_to_pose_stamped(T: np.ndarray, *, frame_id: str, stamp_ns: int = 0):
    """A ``PoseStamped`` of the pose ``T`` expressed in ``frame_id``."""
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=header(stamp_ns, frame_id), pose=matrix_to_pose(T))


def matrix_to_odometry(T: np.ndarray, *, frame_id: str, child_frame_id: str, stamp_ns: int = 0):
    """A ``nav_msgs/Odometry`` with pose ``T`` (covariances zero, twist zero)."""
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.header = header(stamp_ns, frame_id)
    msg.child_frame_id = str(child_frame_id)
    msg.pose.pose = matrix_to_pose(T)
    return msg


def matrix_to_transform_stamped(T: np.ndarray, *, frame_id: str, child_frame_id: str,
                                stamp_ns: int = 0):
    """A ``TransformStamped`` ``frame_id`` <- ``child_frame_id`` of the rigid transform ``T``."""
    from geometry_msgs.msg import Transform, TransformStamped, Vector3

    pose = matrix_to_pose(T)
    p = pose.position
    return TransformStamped(
        header=header(stamp_ns, frame_id), child_frame_id=str(child_frame_id),
        transform=Transform(translation=Vector3(x=p.x, y=p.y, z=p.z), rotation=pose.orientation))


# --------------------------------------------------------------------------- stamps


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_s(stamp) -> float:
    """Float seconds of a ``builtin_interfaces/Time`` (sub-microsecond rounding at epoch scale)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def ns_to_stamp(ns: int):
    """A ``builtin_interfaces/Time`` of non-negative integer nanoseconds."""
    from builtin_interfaces.msg import Time

    ns = int(ns)
    sec, nanosec = divmod(ns, 1_000_000_000)
    if ns < 0 or sec > _INT32_MAX:
        raise ValueError(f"time {ns} ns is outside builtin_interfaces/Time's range "
                         f"(0 .. {_INT32_MAX} s)")
    return Time(sec=int(sec), nanosec=int(nanosec))


def s_to_stamp(seconds: float):
    """A ``builtin_interfaces/Time`` of float seconds (rounded to the nanosecond)."""
    if not math.isfinite(seconds):
        raise ValueError(f"time {seconds} s is not finite")
    return ns_to_stamp(round(seconds * 1e9))
