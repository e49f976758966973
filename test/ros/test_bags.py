"""Bags: write one from a synthetic scene, read it back with rosbags, replay it into rclpy."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clusteringsdf_ros import conversions as conv

from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.bags import (DEFAULT_BASE_TIME_NS, OPTICAL_FRAME, T_BODY_OPTICAL, BagError,
                                    BagPlayer, BagTopics, parse_remap, parse_wait_for_topics,
                                    write_bag_from_dataset)
from clusteringsdf_ros.params import RosConfig

NS = 1_000_000_000


@pytest.fixture(scope="module")
def dataset():
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene

    scene = generate_scene(SyntheticSceneConfig(furniture="procedural", width=64, height=48,
                                                num_train=4, num_test=1, num_objects=3))
    ds = scene.dataset
    rng = np.random.default_rng(0)
    for frame in list(ds.train) + list(ds.test):
        # Machine labels: the GT ids renumbered per view (not consistent across views).
        ids = np.unique(frame.gt_instance)
        table = np.zeros(ids.max() + 1, np.int32)
        table[ids[ids > 0]] = rng.permutation(np.arange(1, (ids > 0).sum() + 1)) + 100
        frame.instance = table[frame.gt_instance]
        frame.semantic = frame.gt_semantic.copy()
        frame.confidence = rng.uniform(0, 1, frame.gt_instance.shape).astype(np.float32)
    return ds


@pytest.fixture(scope="module")
def bags(dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {storage: write_bag_from_dataset(dataset, root / storage, storage=storage)
            for storage in ("mcap", "sqlite3")}


def _read(path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    out = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, t_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t_ns, ts.deserialize_cdr(raw, conn.msgtype)))
    return types, out


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(dataset, bags, storage):
    summary = bags[storage]
    types, msgs = _read(summary.path)
    t = BagTopics()
    assert types == {
        t.color: "sensor_msgs/msg/Image", t.camera_info: "sensor_msgs/msg/CameraInfo",
        t.depth: "sensor_msgs/msg/Image", t.instance: "sensor_msgs/msg/Image",
        t.semantic: "sensor_msgs/msg/Image", t.confidence: "sensor_msgs/msg/Image",
        t.pose: "geometry_msgs/msg/PoseStamped", t.tf: "tf2_msgs/msg/TFMessage",
        t.tf_static: "tf2_msgs/msg/TFMessage"}
    frames = list(dataset.train)
    assert summary.frames == len(frames) == 4
    assert {k: len(v) for k, v in msgs.items()} == {**{topic: 4 for topic in types}, t.tf_static: 1}
    assert summary.messages == {k: len(v) for k, v in msgs.items()}
    expected_ns = [DEFAULT_BASE_TIME_NS + round((f.stamp_s - frames[0].stamp_s) * NS)
                   for f in frames]
    assert (summary.start_ns, summary.end_ns) == (expected_ns[0], expected_ns[-1])
    for topic in types:
        if topic == t.tf_static:
            continue
        for (t_ns, msg), want in zip(msgs[topic], expected_ns):
            assert t_ns == want
            header = msg.transforms[0].header if topic == t.tf else msg.header
            assert tfm.stamp_to_ns(header.stamp) == want

    static = msgs[t.tf_static][0][1].transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == ("camera_link", OPTICAL_FRAME)
    np.testing.assert_allclose(tfm.transform_to_matrix(static), T_BODY_OPTICAL, atol=1e-12)
    for k, frame in enumerate(frames):
        rgb = msgs[t.color][k][1]
        assert rgb.encoding == "rgb8" and rgb.header.frame_id == OPTICAL_FRAME
        np.testing.assert_array_equal(conv.image_to_rgb(rgb), frame.rgb)
        depth = msgs[t.depth][k][1]
        assert depth.encoding == "16UC1"
        np.testing.assert_allclose(conv.image_to_depth_m(depth), frame.depth_m, atol=0.0005 + 1e-6)
        inst = msgs[t.instance][k][1]
        assert inst.encoding == "16UC1"
        np.testing.assert_array_equal(conv.image_to_labels(inst), frame.instance)
        np.testing.assert_array_equal(conv.image_to_labels(msgs[t.semantic][k][1]), frame.semantic)
        np.testing.assert_array_equal(conv.image_to_confidence(msgs[t.confidence][k][1]),
                                      frame.confidence)
        assert conv.camera_info_to_intrinsics(msgs[t.camera_info][k][1]) == frame.intrinsics
        pose = msgs[t.pose][k][1]
        assert pose.header.frame_id == "map"
        np.testing.assert_allclose(tfm.pose_stamped_to_matrix(pose), frame.T_world_cam, atol=1e-9)
        tf = msgs[t.tf][k][1].transforms[0]
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "camera_link")
        # map -> camera_link -> optical frame is the frame's camera-to-world pose.
        np.testing.assert_allclose(tfm.transform_to_matrix(tf) @ T_BODY_OPTICAL,
                                   frame.T_world_cam, atol=1e-9)


def test_options_test_frames_rate_topics_and_direct_tf(dataset, tmp_path):
    topics = BagTopics.from_ros_config(RosConfig(color_topic="cam/rgb", instance_topic="seg/ids"))
    assert topics.color == "/cam/rgb" and topics.semantic == "/segmentation/semantic"
    summary = write_bag_from_dataset(
        dataset, tmp_path / "b", storage="sqlite3", topics=topics, include_depth=False,
        include_semantic=False, include_confidence=False, include_test=True, rate=2.0,
        base_time_ns=5 * NS, body_frame="")
    types, msgs = _read(summary.path)
    assert set(types) == {"/cam/rgb", "/color/camera_info", "/seg/ids", "/camera/pose", "/tf"}
    assert summary.frames == 5
    frames = sorted(list(dataset.train) + list(dataset.test), key=lambda f: f.stamp_s)
    stamps = [t_ns for t_ns, _ in msgs["/cam/rgb"]]
    assert stamps == [5 * NS + round((f.stamp_s - frames[0].stamp_s) / 2.0 * NS) for f in frames]
    tf = msgs["/tf"][-1][1].transforms[0]
    assert tf.child_frame_id == OPTICAL_FRAME
    np.testing.assert_allclose(tfm.transform_to_matrix(tf), frames[-1].T_world_cam, atol=1e-9)

    even = write_bag_from_dataset(dataset, tmp_path / "even", frame_rate_hz=10.0,
                                  include_labels=False)
    assert even.end_ns - even.start_ns == 3 * NS // 10
    assert "/segmentation/instance" not in even.messages


def test_writer_refusals(dataset, tmp_path):
    with pytest.raises(ValueError, match="storage"):
        write_bag_from_dataset(dataset, tmp_path / "x", storage="rosbag1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        write_bag_from_dataset(dataset, tmp_path / "exists")
    from clusteringsdf_core.data.dataset import SceneDataset

    unlabelled = SceneDataset(name="u", train=[f.with_labels(instance=None) for f in dataset.train],
                              test=[])
    with pytest.raises(ValueError, match="no machine instance labels"):
        write_bag_from_dataset(unlabelled, tmp_path / "u")
    same_stamps = SceneDataset(name="s", train=[f.with_labels() for f in dataset.train], test=[])
    for f in same_stamps.train:
        f.stamp_s = 0.0
    with pytest.raises(ValueError, match="frame_rate_hz"):
        write_bag_from_dataset(same_stamps, tmp_path / "s")


# --------------------------------------------------------------------------- playing (no DDS)


class _FakePublisher:
    def __init__(self, log, topic):
        self.log, self.topic = log, topic

    def publish(self, raw):
        assert isinstance(raw, bytes)
        self.log.append((time.monotonic(), self.topic, raw))

    def get_subscription_count(self):
        return 1


class _FakeNode:
    def __init__(self):
        self.log, self.created = [], {}

    def create_publisher(self, msg_class, topic, qos):
        self.created[topic] = (msg_class, qos)
        return _FakePublisher(self.log, topic)


def test_player_waits_for_a_subscriber_on_each_topic_it_must_wait_for(bags):
    node = _FakeNode()
    now = [0.0]
    player = BagPlayer(bags["mcap"].path, node, topics=["/color/image_raw", "/camera/pose"],
                       wait_for_subscribers_s=30.0, wait_for_topics=["camera/pose"], clock=lambda: now[0])
    subscribers = {"/color/image_raw": 1, "/camera/pose": 0}   # a segmenter came, the mapping node not yet
    for _, publisher in player._publishers.values():
        publisher.get_subscription_count = lambda topic=publisher.topic: subscribers[topic]

    def wait(seconds):                                          # the player's sleeps advance the clock
        now[0] += 0.5
        if now[0] >= 10.0:
            subscribers["/camera/pose"] = 1                     # the mapping node is up after 10 s
        return False

    player._stop.wait = wait
    player._wait_for_subscribers()
    assert 10.0 <= now[0] <= 10.5                               # not the one second after the first subscriber
    player.close()


def test_player_waits_for_the_number_of_subscribers_a_topic_asks_for(bags):
    assert parse_wait_for_topics(["camera/pose", "/color/image_raw:2"]) == {"/camera/pose": 1,
                                                                          "/color/image_raw": 2}
    for bad in ("/color/image_raw:0", "/color/image_raw:two", ":2"):
        with pytest.raises(ValueError, match="topic:N"):
            parse_wait_for_topics([bad])
    node = _FakeNode()
    now = [0.0]
    player = BagPlayer(bags["mcap"].path, node, topics=["/color/image_raw", "/camera/pose"],
                       wait_for_subscribers_s=30.0, wait_for_topics=["/camera/pose", "/color/image_raw:2"],
                       clock=lambda: now[0])
    subscribers = {"/color/image_raw": 1, "/camera/pose": 1}   # the mapping node is up, the segmenter not yet
    for _, publisher in player._publishers.values():
        publisher.get_subscription_count = lambda topic=publisher.topic: subscribers[topic]

    def wait(seconds):
        now[0] += 0.5
        if now[0] >= 6.0:
            subscribers["/color/image_raw"] = 2                 # the segmenter subscribes after 6 s
        return False

    player._stop.wait = wait
    player._wait_for_subscribers()
    assert 6.0 <= now[0] <= 6.5
    player.close()


def test_player_schedule_offset_remap_whitelist_and_skips(bags):
    path = bags["mcap"].path
    node, warnings = _FakeNode(), []
    player = BagPlayer(path, node, rate=4.0, start_offset_s=0.1,
                       remap=["/color/image_raw:=/replay/rgb"],
                       topics=["/color/image_raw", "/camera/pose", "/tf"], logger=warnings.append)
    stats = player.play()
    player.close()
    assert sorted(node.created) == ["/camera/pose", "/replay/rgb"]
    assert stats.skipped_topics.keys() == {"/tf"} and len(warnings) == 1  # no tf2_msgs here
    # The offset skips frame 0 (at 0.0 s); frames 1..3 at 0.2 s spacing / rate 4.
    assert stats.published == {"/replay/rgb": 3, "/camera/pose": 3}
    rgb_times = [t for t, topic, _ in node.log if topic == "/replay/rgb"]
    since_first = np.array(rgb_times[1:]) - rgb_times[0]
    scheduled = np.array([0.05, 0.10])
    # Never ahead of the schedule (which is anchored at the start, so a late message
    # does not delay the next ones), and within a generous failure bound.
    assert np.all(since_first >= scheduled - stats.max_lateness_s - 0.002)
    assert np.all(since_first < scheduled + 1.0)
    from sensor_msgs.msg import Image
    from rclpy.serialization import deserialize_message

    first = deserialize_message(next(raw for _, topic, raw in node.log if topic == "/replay/rgb"),
                                Image)
    assert tfm.stamp_to_ns(first.header.stamp) == bags["mcap"].start_ns + NS // 5


def test_player_loops_until_stopped(bags):
    node = _FakeNode()
    player = BagPlayer(bags["sqlite3"].path, node, rate=20.0, loop=True,
                       topics=["/color/image_raw"])
    thread = threading.Thread(target=player.play)
    thread.start()
    deadline = time.monotonic() + 20.0
    while len(node.log) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    player.stop()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert player.stats.loops_completed >= 2 and player.stats.stopped
    player.close()


def test_player_refusals(bags, tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagPlayer(tmp_path / "nope", _FakeNode())
    with pytest.raises(ValueError, match="none of the topics"):
        BagPlayer(bags["mcap"].path, _FakeNode(), topics=["/nothing"])
    with pytest.raises(ValueError, match="rate"):
        BagPlayer(bags["mcap"].path, _FakeNode(), rate=0.0)
    assert parse_remap(["a:=/b", ""]) == {"/a": "/b"}
    with pytest.raises(ValueError, match="from:=to"):
        parse_remap(["a=b"])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_gives_a_clear_error(bags, tmp_path, storage):
    copy = tmp_path / storage
    shutil.copytree(bags[storage].path, copy)
    data = next(p for p in copy.iterdir() if p.suffix in (".mcap", ".db3"))
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(BagError, match="truncated or corrupt"):
        BagPlayer(copy, _FakeNode()).play()


# --------------------------------------------------------------------------- playing into rclpy


def test_player_publishes_into_rclpy_at_recorded_timing(dataset, bags, ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rate = 2.0
    node = rclpy.create_node("test_bag_player", context=ros_context)
    received = []
    node.create_subscription(
        Image, "/replay/color", lambda m: received.append((time.monotonic(), m)),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    player = BagPlayer(bags["mcap"].path, node, rate=rate,
                       remap={"/color/image_raw": "/replay/color"}, topics=["/color/image_raw"],
                       wait_for_subscribers_s=20.0)
    thread = threading.Thread(target=player.play)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    thread.start()
    deadline = time.monotonic() + 20.0  # a failure bound, not a speed check
    while len(received) < 4 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    thread.join(timeout=5.0)
    executor.shutdown()
    player.close()
    node.destroy_node()

    frames = list(dataset.train)
    assert len(received) == 4, f"received {len(received)} of 4 images"
    stamps = [tfm.stamp_to_ns(m.header.stamp) for _, m in received]
    assert stamps == sorted(stamps)  # in order
    for (_, msg), frame in zip(received, frames):
        np.testing.assert_array_equal(conv.image_to_rgb(msg), frame.rgb)
    recorded = np.diff([f.stamp_s for f in frames]) / rate
    arrived = np.diff([t for t, _ in received])
    # Inter-arrival times follow the recorded ones: the span is never shorter than
    # recorded minus DDS jitter, and stays within a generous failure bound.
    assert arrived.sum() >= recorded.sum() - 0.05
    assert np.all(np.abs(arrived - recorded) < 1.0)
    assert player.stats.max_lateness_s < 1.0


def test_bag_player_node_runs_as_a_process_and_stops_on_sigterm(bags):
    cmd = [sys.executable, "-m", "clusteringsdf_ros.bag_player_node", "--ros-args",
           "-p", f"bag_path:={bags['mcap'].path}", "-p", "loop:=true", "-p", "rate:=5.0",
           "-p", "remap:=['/color/image_raw:=/node_test/rgb']",
           "-p", "topics:=['/color/image_raw']"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20.0
        lines = []
        while time.monotonic() < deadline:  # wait until it is playing
            line = proc.stdout.readline()
            lines.append(line)
            if "playing" in line or not line:
                break
        assert any("playing" in line and "/node_test/rgb" in line for line in lines), lines
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + out


def test_bag_player_node_exits_non_zero_on_a_missing_bag(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clusteringsdf_ros.bag_player_node", "--ros-args",
                           "-p", f"bag_path:={tmp_path / 'missing'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr


def test_player_publishes_the_recorded_time_on_clock(bags):
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    node = _FakeNode()
    player = BagPlayer(bags["mcap"].path, node, rate=20.0, topics=["/color/image_raw"], publish_clock=True)
    stats = player.play()
    player.close()
    log = [(topic, raw) for _, topic, raw in node.log]
    assert stats.published["/clock"] == stats.published["/color/image_raw"]
    # each image comes right after the /clock of its recorded time
    for (topic, raw), (next_topic, _) in zip(log[::2], log[1::2]):
        assert topic == "/clock" and next_topic == "/color/image_raw"
    first = deserialize_message(log[0][1], Clock).clock
    assert first.sec * NS + first.nanosec == bags["mcap"].start_ns
