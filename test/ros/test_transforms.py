"""Poses, quaternions and stamps <-> ROS messages."""

import math

import numpy as np
import pytest

from clusteringsdf_ros import transforms as tfm


def _random_pose(rng) -> np.ndarray:
    from transforms3d.euler import euler2mat

    T = np.eye(4)
    T[:3, :3] = euler2mat(*rng.uniform(-np.pi, np.pi, 3))
    T[:3, 3] = rng.normal(size=3)
    return T


def test_pose_messages_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        T = _random_pose(rng)
        np.testing.assert_allclose(tfm.pose_to_matrix(tfm.matrix_to_pose(T)), T, atol=1e-12)
        ps = tfm.matrix_to_pose_stamped(T, frame_id="map", stamp_ns=7)
        assert ps.header.frame_id == "map"
        np.testing.assert_allclose(tfm.pose_stamped_to_matrix(ps), T, atol=1e-12)
        tf = tfm.matrix_to_transform_stamped(T, frame_id="map", child_frame_id="cam")
        assert tf.child_frame_id == "cam"
        np.testing.assert_allclose(tfm.transform_to_matrix(tf), T, atol=1e-12)
        np.testing.assert_allclose(tfm.transform_to_matrix(tf.transform), T, atol=1e-12)
        odom = tfm.matrix_to_odometry(T, frame_id="map", child_frame_id="cam")
        assert odom.child_frame_id == "cam"
        np.testing.assert_allclose(tfm.odometry_to_matrix(odom), T, atol=1e-12)


def test_quaternion_convention_is_ros_xyzw():
    # 90 degrees about z: x axis -> y axis.
    s = math.sqrt(0.5)
    R = tfm.quaternion_to_rotation(0.0, 0.0, s, s)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    q = tfm.rotation_to_quaternion(R)
    np.testing.assert_allclose(q, [0, 0, s, s], atol=1e-12)
    # 270 degrees about z: w is made non-negative (q and -q are the same rotation).
    R270 = tfm.quaternion_to_rotation(0.0, 0.0, math.sin(0.75 * math.pi), math.cos(0.75 * math.pi))
    q = tfm.rotation_to_quaternion(R270)
    assert q[3] >= 0
    np.testing.assert_allclose(tfm.quaternion_to_rotation(*q), R270, atol=1e-12)


def test_pose_validation_normalises_small_errors_and_refuses_large_ones():
    from geometry_msgs.msg import Pose

    pose = Pose()
    pose.orientation.x, pose.orientation.w = 0.0, 1.004
    np.testing.assert_allclose(tfm.pose_to_matrix(pose)[:3, :3], np.eye(3), atol=1e-12)
    pose.orientation.w = 1.5
    with pytest.raises(ValueError, match="norm 1.5"):
        tfm.pose_to_matrix(pose)
    pose.orientation.w = 0.0
    with pytest.raises(ValueError, match="not a rotation"):
        tfm.pose_to_matrix(pose)
    pose.orientation.w = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tfm.pose_to_matrix(pose)
    pose.orientation.w = 1.0
    pose.position.y = float("inf")
    with pytest.raises(ValueError, match="translation contains NaN"):
        tfm.pose_to_matrix(pose)


def test_matrix_to_pose_refuses_non_rigid_and_nan():
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(ValueError, match="non-rigid"):
        tfm.matrix_to_pose(T)
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="non-rigid"):
        tfm.matrix_to_pose_stamped(mirror, frame_id="map")
    T = np.eye(4)
    T[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tfm.matrix_to_transform_stamped(T, frame_id="map", child_frame_id="cam")


def test_quaternion_fallback_is_transforms3d_here():
    if tfm._tf_transformations() is not None:
        pytest.skip("tf_transformations is installed; its path is tested below")
    from transforms3d.quaternions import quat2mat

    q = np.array([0.1, -0.3, 0.5, 0.8])
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(tfm.quaternion_to_rotation(*q), quat2mat([q[3], *q[:3]]))


def test_tf_transformations_path_matches_transforms3d():
    pytest.importorskip("tf_transformations", reason="tf_transformations is not installed "
                        "(PyPI ROS wheels)")
    from transforms3d.quaternions import quat2mat

    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(tfm.quaternion_to_rotation(*q), quat2mat([q[3], *q[:3]]),
                                   atol=1e-12)
        R = quat2mat([q[3], *q[:3]])
        np.testing.assert_allclose(tfm.rotation_to_quaternion(R), q if q[3] >= 0 else -q,
                                   atol=1e-12)


# --------------------------------------------------------------------------- stamps


def test_stamps():
    stamp = tfm.ns_to_stamp(1_700_000_000_123_456_789)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert tfm.stamp_to_ns(stamp) == 1_700_000_000_123_456_789
    assert tfm.stamp_to_s(stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert tfm.stamp_to_ns(tfm.s_to_stamp(12.5)) == 12_500_000_000
    assert tfm.stamp_to_ns(tfm.s_to_stamp(0.1 + 0.2)) == 300_000_000  # rounded, not truncated
    with pytest.raises(ValueError, match="outside"):
        tfm.ns_to_stamp(-1)
    with pytest.raises(ValueError, match="outside"):
        tfm.ns_to_stamp(2**31 * 1_000_000_000)
    with pytest.raises(ValueError, match="not finite"):
        tfm.s_to_stamp(float("nan"))
