"""Camera poses from the poses robots publish: Odometry of a body in the odometry frame
with the camera extrinsic (parameter or TF), frames TF relates to the map, and TF
lookups that never wait inside an input callback (sets wait on a timer instead)."""

import sys
import types

import numpy as np
import pytest

from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene

from test_mapping_node import BASE_NS, NS, _messages, _overrides

#: A camera optical frame 0.2 m ahead of and 0.3 m above base_link, looking along its x
#: axis (optical z forward = body x, optical x right = body -y, optical y down = body -z).
EXTRINSIC = [0.2, 0.0, 0.3, -0.5, 0.5, -0.5, 0.5]


def _rigid(angle, t):
    c, s = np.cos(angle), np.sin(angle)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = t
    return T


def _extrinsic_matrix():
    from clusteringsdf_ros.params import parse_extrinsic

    return parse_extrinsic(EXTRINSIC)


@pytest.fixture(scope="module")
def frames():
    scene = generate_scene(SyntheticSceneConfig(furniture="procedural", width=48, height=36,
                                                num_train=3, num_test=1, num_objects=2))
    return segmenter_sim.simulate_dataset(scene.dataset.train, segmenter_sim.preset("0%"), seed=0)


def test_the_extrinsic_parameter_is_seven_numbers_of_a_rigid_pose():
    from clusteringsdf_core.config import ConfigError
    from clusteringsdf_ros.params import parse_extrinsic

    T = _extrinsic_matrix()
    np.testing.assert_allclose(T[:3, 3], [0.2, 0.0, 0.3])
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)    # optical z = body x
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)   # optical x = body -y
    assert parse_extrinsic(None) is None and parse_extrinsic([]) is None
    for bad, match in [([1.0, 2.0], "seven finite numbers"), ([0, 0, 0, 0, 0, 0, 2.0], "norm"),
                       ([float("nan"), 0, 0, 0, 0, 0, 1], "seven finite")]:
        with pytest.raises(ConfigError, match=f"ros.camera_extrinsic: .*{match}"):
            parse_extrinsic(bad)


def test_frame_chain_composes_map_odometry_body_and_camera():
    from clusteringsdf_ros.pose_frames import FrameChain, PoseFrameError

    odom_base = _rigid(0.7, [1.0, 2.0, 0.0])
    E = _extrinsic_matrix()
    # REP 105 odometry (odom -> base_link) with ros.map_frame: odom and the extrinsic parameter
    chain = FrameChain("odom", extrinsic=E)
    np.testing.assert_allclose(chain.camera_in_map(odom_base, "odom", "base_link", BASE_NS), odom_base @ E)
    # no extrinsic, no TF: a body pose says how to make it usable; a camera pose is used as it is
    chain = FrameChain("map", camera_frame="cam_optical")
    with pytest.raises(PoseFrameError, match="ros.camera_extrinsic") as info:
        chain.camera_in_map(odom_base, "map", "base_link", BASE_NS)
    assert info.value.counter == "pose_no_extrinsic"
    np.testing.assert_allclose(chain.camera_in_map(odom_base, "/map", "cam_optical", BASE_NS), odom_base)
    np.testing.assert_allclose(chain.camera_in_map(odom_base, "map", "", BASE_NS), odom_base)
    with pytest.raises(PoseFrameError, match="ros.map_frame: odom") as info:
        chain.camera_in_map(odom_base, "odom", "cam_optical", BASE_NS)
    assert info.value.counter == "pose_wrong_frame"
    # with TF: map <- odom at the pose's stamp, base_link <- camera once (static)
    map_odom = _rigid(-0.3, [5.0, 0.0, 0.0])
    calls = []

    def lookup(target, source, stamp_ns):
        calls.append((target, source, stamp_ns))
        if (target, source) == ("map", "odom") and stamp_ns <= BASE_NS + NS:
            return map_odom
        if (target, source) == ("base_link", "cam_optical"):
            return E
        raise LookupError(f"{target} <- {source} at {stamp_ns}: extrapolation into the future")

    chain = FrameChain("map", lookup=lookup)
    chain.see_image_frame("cam_optical")                  # ros.camera_frame '' -> the images' frame
    for k in range(3):
        np.testing.assert_allclose(chain.camera_in_map(odom_base, "odom", "base_link", BASE_NS + k),
                                   map_odom @ odom_base @ E)
    assert calls.count(("base_link", "cam_optical", None)) == 1      # cached after the first
    assert calls.count(("map", "odom", BASE_NS + 2)) == 1            # at the pose's own stamp
    with pytest.raises(PoseFrameError, match="TF has no map <- odom yet") as info:
        chain.camera_in_map(odom_base, "odom", "base_link", BASE_NS + 5 * NS)
    assert info.value.counter == "pose_wrong_frame"


def test_sets_wait_for_tf_until_it_comes_or_their_time_runs_out():
    from clusteringsdf_core.online.poses import PendingSets
    from clusteringsdf_ros.pose_frames import PoseFrameError

    known = {3: np.eye(4)}

    def pose_of(stamp, msgs):
        if stamp not in known:
            raise PoseFrameError("pose_unmatched", f"no TF at {stamp}")
        return known[stamp]

    waiting = PendingSets(pose_of=pose_of, max_waiting=2, wait_s=1.0)
    waiting.add(1, "a", arrived_s=0.0)
    waiting.add(2, "b", arrived_s=0.5)
    waiting.add(3, "c", arrived_s=0.6)
    # the oldest is forced out (more than 2 waiting, no pose), c has its TF, b waits
    out = waiting.resolve(expire=True, now_s=0.8)
    assert [(s, m, T is None) for s, m, T in out] == [(1, "a", True), (3, "c", False)] and len(waiting) == 1
    assert waiting.resolve(expire=True, now_s=1.4) == []               # b came at 0.5: not yet 1 s
    [(stamp, msgs, T)] = waiting.resolve(expire=True, now_s=1.6)       # its time ran out
    assert (stamp, msgs, T) == (2, "b", None) and len(waiting) == 0


def test_odometry_of_base_link_in_the_odom_frame_gives_the_camera_pose(frames, ros_context):
    from clusteringsdf_ros import mapping_node as mn
    from clusteringsdf_ros import transforms as tfm

    node = mn.MappingNode(context=ros_context, namespace="/t_odom", parameter_overrides=_overrides(
        **{"ros.pose_source": "odometry", "ros.map_frame": "odom", "ros.camera_extrinsic": EXTRINSIC,
           "ros.save_on_shutdown": False}))
    try:
        E = _extrinsic_matrix()
        assert node.describe_parameter("ros.camera_extrinsic").read_only
        T_cam = frames[0].T_world_cam
        T_base = T_cam @ np.linalg.inv(E)
        node._on_odometry(tfm.matrix_to_odometry(T_base, frame_id="odom", child_frame_id="base_link",
                                                 stamp_ns=BASE_NS))
        np.testing.assert_allclose(node.poses.lookup(BASE_NS, 0), T_cam, atol=1e-9)
        node._on_odometry(tfm.matrix_to_odometry(T_base, frame_id="map", child_frame_id="base_link",
                                                 stamp_ns=BASE_NS + NS))
        assert node.counters["pose_wrong_frame"] == 1               # no TF here relates map to odom
    finally:
        node.destroy_node()


class _FakeTfBuffer:
    """What the node asks of a tf2_ros.Buffer, answering from a dict of transforms."""

    def __init__(self, *args, **kwargs):
        self.transforms = {}
        self.timeouts = []

    def lookup_transform(self, target, source, when, timeout=None):
        self.timeouts.append(timeout.nanoseconds)
        key = (target, source, when.nanoseconds)
        if key not in self.transforms:
            raise RuntimeError(f"Lookup would require extrapolation into the future ({key})")
        return self.transforms[key]

    def clear(self):
        self.transforms.clear()


@pytest.fixture
def fake_tf2(monkeypatch):
    """A tf2_ros stand-in (the PyPI wheels have none) so that the node's TF path runs here."""
    module = types.ModuleType("tf2_ros")
    module.Buffer = _FakeTfBuffer
    module.TransformListener = lambda buffer, node: None
    monkeypatch.setitem(sys.modules, "tf2_ros", module)
    return module


def test_tf_poses_never_wait_in_the_input_callback(frames, ros_context, fake_tf2, monkeypatch):
    from clusteringsdf_ros import mapping_node as mn
    from clusteringsdf_ros import transforms as tfm

    node = mn.MappingNode(context=ros_context, namespace="/t_tf", parameter_overrides=_overrides(
        **{"ros.pose_source": "tf", "ros.tf_timeout_s": 0.5, "ros.save_on_shutdown": False}))
    try:
        assert node.pose_source == "tf" and isinstance(node.tf_buffer, _FakeTfBuffer)
        node._tf_timer.cancel()                 # retried by hand below
        order = ("rgb", "info", "instance", "depth")
        sets = [_messages(f, stamp_ns=BASE_NS + k * NS // 10, frame_id="cam") for k, f in enumerate(frames)]
        node._on_synced(*[sets[0][key] for key in order])
        node._on_synced(*[sets[1][key] for key in order])
        assert node.tf_buffer.timeouts and set(node.tf_buffer.timeouts) == {0}   # asked, not waited for
        assert node.status_values()["sets_waiting_for_tf"] == 2 and node.counters["frames_enqueued"] == 0
        # TF for the first set comes: the timer enqueues it, the other keeps waiting
        node.tf_buffer.transforms[("map", "cam", BASE_NS)] = tfm.matrix_to_transform_stamped(
            frames[0].T_world_cam, frame_id="map", child_frame_id="cam", stamp_ns=BASE_NS)
        node._retry_tf()
        assert node.counters["frames_enqueued"] == 1 and len(node.tf_waiting) == 1
        later = mn.time.monotonic() + 1.0        # its 0.5 s run out: dropped and counted
        monkeypatch.setattr(mn.time, "monotonic", lambda: later)
        node._retry_tf()
        monkeypatch.undo()
        assert len(node.tf_waiting) == 0 and node.counters["pose_unmatched"] == 1
        assert node.counters["frames_enqueued"] == 1
    finally:
        node.destroy_node()
