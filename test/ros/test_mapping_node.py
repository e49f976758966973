"""The mapping node: message -> frame conversion and bad inputs, pose matching, bounds,
meshes and markers, and one node in-process that trains on a tiny synthetic scene,
publishes objects, saves the map, survives bad messages and takes parameter updates."""

import json
import threading
import time

import numpy as np
import pytest

from _node_harness import SpunNodes
from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.online import BOOTSTRAP_FRAMES
from clusteringsdf_core.online.meshes import MAX_MESH_FACES

NS = 1_000_000_000
BASE_NS = 1_700_000_000 * NS

#: A model small enough for a shared 2-core machine.
TINY = {
    "model.num_channels": 6, "model.grid_max_resolution": 32, "model.init_channel_gap": 0.0,
    "render.num_samples_coarse": 16, "render.num_samples": 12, "render.depth_guided_samples": 6,
    "sampling.rays_per_batch": 128, "loss.eikonal_points": 64,
    "data.image_width": 48, "data.image_height": 36,
    "keyframes.min_translation_m": 0.0, "keyframes.min_rotation_deg": 0.0,
    "trainer.num_threads": 1, "trainer.device": "cpu",
    "extract.resolution": 24, "extract.min_object_faces": 5, "extract.min_component_faces": 0,
}


@pytest.fixture(scope="module")
def mn():
    from clusteringsdf_ros import mapping_node
    return mapping_node


@pytest.fixture(scope="module")
def inp():
    from clusteringsdf_ros import inputs
    return inputs


@pytest.fixture(scope="module")
def om():
    from clusteringsdf_ros import object_msgs
    return object_msgs


@pytest.fixture(scope="module")
def frames():
    scene = generate_scene(SyntheticSceneConfig(furniture="procedural", width=48, height=36,
                                                num_train=6, num_test=1, num_objects=3))
    return segmenter_sim.simulate_dataset(scene.dataset.train, segmenter_sim.preset("0%"), seed=0)


def _messages(frame, stamp_ns=BASE_NS, frame_id="camera_color_optical_frame"):
    from clusteringsdf_ros import conversions as conv
    from clusteringsdf_ros import transforms as tfm

    kw = dict(stamp_ns=stamp_ns, frame_id=frame_id)
    return dict(rgb=conv.rgb_to_image(frame.rgb, **kw),
                info=conv.intrinsics_to_camera_info(frame.intrinsics, **kw),
                instance=conv.labels_to_image(frame.instance.astype(np.int32), **kw),
                depth=conv.depth_to_image(frame.depth_m, **kw),
                pose=tfm.matrix_to_pose_stamped(frame.T_world_cam, frame_id="map",
                                                 stamp_ns=stamp_ns))


def _convert(inp, m, T=None, **kw):
    return inp.frame_from_messages(m["rgb"], m["info"], m["instance"],
                                  m["pose_T"] if T is None else T, depth_msg=m.get("depth"), **kw)


# --------------------------------------------------------------------------- frame_from_messages


def test_frame_from_messages_good_input(inp, frames):
    src = frames[0]
    m = _messages(src)
    frame, notes = inp.frame_from_messages(m["rgb"], m["info"], m["instance"], src.T_world_cam,
                                          depth_msg=m["depth"], max_labels=5, index=7)
    assert frame.index == 7 and frame.stamp_s == pytest.approx(BASE_NS / NS)
    np.testing.assert_array_equal(frame.rgb, src.rgb)
    np.testing.assert_allclose(frame.intrinsics.K, src.intrinsics.K, atol=1e-9)
    np.testing.assert_allclose(frame.depth_m, src.depth_m, atol=6e-4)
    np.testing.assert_allclose(frame.T_world_cam, src.T_world_cam)
    # ids renumbered 1..n per view, the partition unchanged
    ids = np.unique(frame.instance[frame.instance > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert ((frame.instance > 0) == (src.instance > 0)).all()
    assert not notes.empty_labels and notes.labels_over_budget == 0
    frame.validate()


def _with(m, **changes):
    out = dict(m)
    out.update(changes)
    return out


def _bad_cases(frames):
    from clusteringsdf_ros import conversions as conv

    src = frames[0]
    m = _messages(src)
    uncalibrated = conv.intrinsics_to_camera_info(src.intrinsics)
    uncalibrated.k = [0.0] * 9
    uncalibrated.p = [0.0] * 12
    nan_pose = src.T_world_cam.copy()
    nan_pose[0, 3] = np.nan
    sheared = src.T_world_cam.copy()
    sheared[:3, :3] *= 1.2
    return {
        "rgb_encoding": ("bad_encoding", _with(m, rgb=conv.numpy_to_image(
            np.zeros((36, 48), np.float32), "32FC1")), src.T_world_cam),
        "labels_encoding": ("bad_encoding", _with(m, instance=conv.rgb_to_image(src.rgb)),
                            src.T_world_cam),
        "depth_encoding": ("bad_encoding", _with(m, depth=conv.rgb_to_image(src.rgb)),
                           src.T_world_cam),
        "labels_size": ("size_mismatch", _with(m, instance=conv.labels_to_image(
            np.zeros((18, 24), np.int32))), src.T_world_cam),
        "depth_size": ("size_mismatch", _with(m, depth=conv.depth_to_image(
            np.ones((18, 24), np.float32))), src.T_world_cam),
        "info_size": ("size_mismatch", _with(m, info=conv.intrinsics_to_camera_info(
            Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48))), src.T_world_cam),
        "info_uncalibrated": ("bad_camera_info", _with(m, info=uncalibrated), src.T_world_cam),
        "negative_labels": ("bad_labels", _with(m, instance=conv.labels_to_image(
            np.full((36, 48), -3, np.int32), "32SC1")), src.T_world_cam),
        "nan_pose": ("bad_pose", m, nan_pose),
        "non_rigid_pose": ("bad_pose", m, sheared),
    }


@pytest.mark.parametrize("case", ["rgb_encoding", "labels_encoding", "depth_encoding", "labels_size",
                                  "depth_size", "info_size", "info_uncalibrated", "negative_labels",
                                  "nan_pose", "non_rigid_pose"])
def test_frame_from_messages_bad_input_names_its_counter(mn, inp, frames, case):
    counter, m, T = _bad_cases(frames)[case]
    with pytest.raises(inp.InputError) as info:
        _convert(inp, m, T)
    assert info.value.counter == counter and counter in mn.COUNTERS
    assert isinstance(info.value, ValueError) and str(info.value)


def test_labels_over_the_channel_budget_become_unknown_and_empty_labels_are_kept(inp, frames):
    from clusteringsdf_ros import conversions as conv

    src = frames[0]
    labels = np.zeros((36, 48), np.int32)
    for k in range(9):  # label 10+k covers (k + 1) of the 48 columns: sizes differ
        labels[:, sum(range(k + 1)):sum(range(k + 2))] = 10 + k
    m = _with(_messages(src), instance=conv.labels_to_image(labels))
    frame, notes = _convert(inp, m, src.T_world_cam, max_labels=3)
    assert notes.labels_over_budget == 6
    kept = np.unique(frame.instance[frame.instance > 0])
    np.testing.assert_array_equal(kept, [1, 2, 3])
    assert set(np.unique(labels[frame.instance > 0])) == {16, 17, 18}  # the three largest
    assert set(np.unique(labels[frame.instance == -1])) == set(range(10, 16))  # the rest: unknown
    assert not (frame.instance[labels > 0] == 0).any()                     # none became background
    empty = _with(m, instance=conv.labels_to_image(np.zeros((36, 48), np.int32)))
    frame, notes = _convert(inp, empty, src.T_world_cam, max_labels=3)
    assert notes.empty_labels and not frame.instance.any()


def test_semantic_ids_outside_the_class_table_drop_the_set(inp, frames):
    from clusteringsdf_ros import conversions as conv

    src = frames[0]
    semantic = np.zeros((36, 48), np.int32)
    semantic[:, :10] = 4
    m = _messages(src)
    frame, _ = _convert(inp, m, src.T_world_cam, semantic_msg=conv.labels_to_image(semantic), num_classes=5)
    assert frame.semantic.max() == 4
    with pytest.raises(inp.InputError, match="class id 4; the class table") as info:
        _convert(inp, m, src.T_world_cam, semantic_msg=conv.labels_to_image(semantic), num_classes=4)
    assert info.value.counter == "bad_labels"


# --------------------------------------------------------------------------- pose matching, bounds, meshes


def _tracked_box(object_id=3, subdivisions=0):
    import trimesh

    from clusteringsdf_core.extract import ExtractedObject, TrackedObject, oriented_box_upright

    mesh = trimesh.creation.box(extents=(0.4, 0.6, 0.8)) if not subdivisions else \
        trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)
    mesh.apply_translation([1.0, 2.0, 0.4])
    pose, size = oriented_box_upright(np.asarray(mesh.vertices))
    obj = ExtractedObject(channel=2, mesh=mesh, class_id=5, confidence=0.8,
                          centroid=np.asarray(mesh.centroid), box_pose=pose, box_size=size,
                          volume=0.192)
    return TrackedObject(object_id, obj, first_seen=10.5, last_updated=12.25, num_observations=4)


def test_object_message_and_markers_are_filled(om):
    from clusteringsdf_core.data.classes import SCANNET_REDUCED
    from visualization_msgs.msg import Marker

    from clusteringsdf_core.online import ObjectsResult

    result = ObjectsResult(seq=1, iteration=42, stamp_ns=BASE_NS, objects=(_tracked_box(),),
                              seconds=0.0)
    msg = om.objects_to_msg(result, SCANNET_REDUCED, "map")
    assert msg.header.frame_id == "map" and msg.iteration == 42 and len(msg.objects) == 1
    o = msg.objects[0]
    assert o.id == 3 and o.class_id == 5 and o.class_name == SCANNET_REDUCED.name_of(5)
    assert o.confidence == pytest.approx(0.8) and o.volume == pytest.approx(0.192)
    assert (o.centroid.x, o.centroid.y, o.centroid.z) == pytest.approx((1.0, 2.0, 0.4))
    assert sorted([o.bbox_size.x, o.bbox_size.y, o.bbox_size.z]) == pytest.approx([0.4, 0.6, 0.8])
    assert len(o.mesh.triangles) == 12 and len(o.mesh.vertices) == 8
    assert o.num_observations == 4
    assert (o.first_seen.sec, o.first_seen.nanosec) == (10, 500_000_000)
    assert (o.last_updated.sec, o.last_updated.nanosec) == (12, 250_000_000)
    markers = om.objects_to_markers(msg).markers
    assert markers[0].action == Marker.DELETEALL
    kinds = {(m.ns, m.type) for m in markers[1:]}
    assert kinds == {("mesh", Marker.TRIANGLE_LIST), ("box", Marker.LINE_LIST),
                     ("label", Marker.TEXT_VIEW_FACING)}
    mesh = next(m for m in markers if m.ns == "mesh")
    assert len(mesh.points) == 36 and mesh.id == 3
    assert len(next(m for m in markers if m.ns == "box").points) == 24


# --------------------------------------------------------------------------- the node


def _overrides(**extra):
    from rclpy.parameter import Parameter

    values = {**TINY, **extra}
    return [Parameter(k, value=v) for k, v in values.items()]


def test_parameters_are_described_and_tf_falls_back_to_the_pose_topic(mn, ros_context):
    if _importable("tf2_ros"):
        pytest.skip("tf2_ros is importable here: the fallback does not run")
    from clusteringsdf_core.config import field_help

    node = mn.MappingNode(context=ros_context, namespace="/t_fallback",
                          parameter_overrides=_overrides(**{"ros.pose_source": "tf",
                                                            "ros.save_on_shutdown": False}))
    try:
        assert node.pose_source == "pose_topic" and "tf2_ros" in node.tf_unavailable_reason
        assert node.tf_buffer is None
        topics = [sub.topic_name for sub in node.subscriptions]
        assert "/t_fallback/camera/pose" in topics
        desc = node.describe_parameter("loss.lambda_diff")
        assert desc.description == field_help("loss.lambda_diff")
        assert node.get_parameter("model.num_channels").value == 6  # the override
        assert node.get_parameter("model.activation").value == "silu"  # the cpu preset
        assert node.describe_parameter("ros.sync_slop_s").description
    finally:
        node.destroy_node()


def test_the_class_table_comes_from_ros_class_table(mn, ros_context, tmp_path):
    from clusteringsdf_core.config import ConfigError

    table = tmp_path / "classes.yaml"
    table.write_text("[void, mug, {name: shelf, is_thing: false}]\n")
    node = mn.MappingNode(context=ros_context, namespace="/t_classes", parameter_overrides=_overrides(
        **{"ros.class_table": str(table), "ros.save_on_shutdown": False}))
    try:
        assert [c.name for c in node.classes.classes] == ["void", "mug", "shelf"]
        assert node.engine.classes is node.classes
        assert node.describe_parameter("ros.class_table").read_only
    finally:
        node.destroy_node()
    table.write_text("[mug]\n")
    with pytest.raises(ConfigError, match="ros.class_table: .*entry 0 must be void"):
        mn.MappingNode(context=ros_context, namespace="/t_classes_bad", parameter_overrides=_overrides(
            **{"ros.class_table": str(table), "ros.save_on_shutdown": False}))


def test_tf_pose_source_uses_tf2_where_importable(mn, ros_context):
    pytest.importorskip("tf2_ros")
    node = mn.MappingNode(context=ros_context, parameter_overrides=_overrides(
        **{"ros.pose_source": "tf", "ros.save_on_shutdown": False}))
    try:
        assert node.pose_source == "tf" and node.tf_buffer is not None
    finally:
        node.destroy_node()


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


class _Harness(SpunNodes):
    """The mapping node and a helper node spun on a thread (:class:`SpunNodes`)."""

    def __init__(self, mn, context, ns, overrides):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from std_srvs.srv import Trigger

        from clusteringsdf_ros.msg import ObjectArray

        self.node = mn.MappingNode(context=context, namespace=ns, parameter_overrides=overrides)
        self.helper = rclpy.create_node("mapping_test_helper", namespace=ns, context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        h = self.helper
        self.pubs = {"rgb": h.create_publisher(Image, "color/image_raw", reliable),
                     "info": h.create_publisher(CameraInfo, "color/camera_info", reliable),
                     "instance": h.create_publisher(Image, "segmentation/instance", reliable),
                     "depth": h.create_publisher(Image, "depth/image_raw", reliable),
                     "pose": h.create_publisher(PoseStamped, "camera/pose", reliable)}
        self.objects, self.status = [], []
        self.lock = threading.Lock()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        h.create_subscription(ObjectArray, "objects", self._keep(self.objects), latched)
        h.create_subscription(DiagnosticArray, "mapping_node/status", self._keep(self.status), 10)
        self.clients = {name: h.create_client(Trigger, f"mapping_node/{name}")
                        for name in ("save_map", "reset", "extract_now")}
        from clusteringsdf_ros.srv import LoadMap
        self.clients["load_map"] = h.create_client(LoadMap, "mapping_node/load_map")
        self.spin(context)

    def _keep(self, store):
        def callback(msg):
            with self.lock:
                store.append(msg)
        return callback

    def describe(self):
        return self.last_status()

    def last_status(self):
        with self.lock:
            if not self.status:
                return {}
            return {kv.key: kv.value for kv in self.status[-1].status[0].values}

    def publish(self, msgs, *, pose=True):
        if pose:
            self.pubs["pose"].publish(msgs["pose"])
        for key in ("rgb", "info", "instance", "depth"):
            self.pubs[key].publish(msgs[key])

    def call(self, name, timeout=60.0, request=None):
        from std_srvs.srv import Trigger

        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=10.0), f"service {name} not available"
        future = client.call_async(Trigger.Request() if request is None else request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert future.done(), f"service {name} did not answer"
        return future.result()


def test_node_trains_publishes_saves_and_survives_bad_input(mn, frames, ros_context, tmp_path):
    from clusteringsdf_ros import conversions as conv

    overrides = _overrides(**{
        "ros.pose_source": "pose_topic", "ros.image_qos": "reliable", "ros.objects_topic": "objects",
        "ros.publish_period_s": 0.2, "ros.status_period_s": 0.2, "ros.extract_period_s": 1000.0,
        "ros.sync_slop_s": 0.01, "ros.save_on_shutdown": False, "ros.output_dir": str(tmp_path)})
    h = _Harness(mn, ros_context, "/t_node", overrides)
    node = h.node
    try:
        h.wait_for(lambda: all(p.get_subscription_count() > 0 for p in h.pubs.values()), 10.0,
                   "subscriptions")
        for i, frame in enumerate(frames):
            msgs = _messages(frame, BASE_NS + i * NS // 5)
            last = i == len(frames) - 1
            h.publish(msgs, pose=not last)
            if last:  # the images come before their pose: the set waits for it
                time.sleep(0.2)
                h.pubs["pose"].publish(msgs["pose"])
            time.sleep(0.05)
        status = h.wait_for(lambda: int(h.last_status().get("iteration", 0)) > 0 and h.last_status(),
                            30.0, "training")
        assert int(status["sets_received"]) == len(frames)
        assert int(status["frames_kept"]) >= BOOTSTRAP_FRAMES
        assert status["state"] == "training" and "loss.total" in status
        assert int(status["bad_encoding"]) == 0 and int(status["pose_unmatched"]) == 0

        # extract now -> /objects with stable ids > 0, unchanged between publications
        # (after some training: the first steps' surfaces can be too small to be objects)
        h.wait_for(lambda: int(h.last_status().get("iteration", 0)) >= 150, 60.0, "150 iterations")
        reply = h.call("extract_now")
        assert reply.success, reply.message
        received = h.wait_for(lambda: [m for m in h.objects if m.objects], 10.0, "/objects")
        first = received[-1]
        ids = [o.id for o in first.objects]
        assert ids and min(ids) > 0 and ids == sorted(ids)
        # published when it changed, not every ros.publish_period_s (0.2 s): five periods later
        # nothing new (no extraction ran meanwhile), and the status counts one publication
        published = len(h.objects)
        time.sleep(1.0)
        assert len(h.objects) == published
        assert int(h.last_status()["objects_published"]) == 1
        assert first.header.frame_id == "map" and first.iteration > 0
        assert all(len(o.mesh.triangles) <= MAX_MESH_FACES for o in first.objects)
        # the same snapshot extracted twice keeps the id of every object it contains
        # (an object carried over from an earlier extraction with `misses` > 0 is not in
        # this snapshot: the second miss may drop it, by the tracker's hysteresis)
        snapshot = node.engine.submit(lambda t: t.snapshot()).result(timeout=10)
        a = node.engine._extract(snapshot, [], "cpu", BASE_NS)
        b = node.engine._extract(snapshot, [], "cpu", BASE_NS)
        seen_a = [t.id for t in a.objects if t.misses == 0]
        assert seen_a and seen_a == [t.id for t in b.objects if t.misses == 0]

        # save_map writes objects.json and a checkpoint into ros.output_dir
        reply = h.call("save_map")
        assert reply.success, reply.message
        folder = tmp_path / reply.message.rsplit("/", 1)[-1]
        assert folder.is_dir() and str(folder) == reply.message
        assert (folder / "checkpoint.pt").stat().st_size > 0
        saved = json.loads((folder / "objects.json").read_text())
        assert saved["iteration"] > 0 and all(o["id"] > 0 for o in saved["objects"])

        # load_map: a path without a map changes nothing; the saved map comes back with
        # its iteration, key frames and ids
        from clusteringsdf_ros.srv import LoadMap

        reply = h.call("load_map", request=LoadMap.Request(path=str(tmp_path / "no_map_here")))
        assert not reply.success and "no map" in reply.message, reply.message
        assert node.engine.has_model
        reply = h.call("load_map", request=LoadMap.Request(path=str(folder)))
        assert reply.success, reply.message
        assert f"iteration {saved['iteration']}," in reply.message
        assert f"objects {[o['id'] for o in saved['objects']]}" in reply.message

        # bad input: counted, logged, training goes on without a reset
        before = int(h.last_status()["iteration"])
        bad = _messages(frames[0], BASE_NS + 10 * NS)
        bad["rgb"] = conv.numpy_to_image(np.zeros((36, 48), np.float32), "32FC1",
                                         stamp_ns=BASE_NS + 10 * NS)
        h.publish(bad)
        nan_pose = _messages(frames[1], BASE_NS + 11 * NS)["pose"]
        nan_pose.pose.position.x = float("nan")
        h.pubs["pose"].publish(nan_pose)
        status = h.wait_for(lambda: int(h.last_status().get("bad_encoding", 0)) == 1
                            and int(h.last_status().get("bad_pose", 0)) == 1
                            and int(h.last_status()["iteration"]) > before + 2 and h.last_status(),
                            20.0, "bad inputs counted while training goes on")
        assert status["state"] == "training" and int(status["trainer_errors"]) == 0
        # no camera_info for a set: its messages wait, then are counted when a later set goes out
        lonely = _messages(frames[2], BASE_NS + 12 * NS)
        for key in ("rgb", "instance", "depth"):
            h.pubs[key].publish(lonely[key])
        h.pubs["pose"].publish(lonely["pose"])
        time.sleep(0.2)
        h.publish(_messages(frames[3], BASE_NS + 13 * NS))
        # the executor may take the topics' messages in any order: the next set is late only
        # once this one has gone out (before that, its messages would wait beside it)
        h.wait_for(lambda: int(h.last_status().get("sets_received", 0)) == len(frames) + 2,
                   10.0, "the set after the one without camera_info")
        # a set older than what was already synchronised (by less than TIME_JUMP_BACK_S, so
        # not a restarted timeline): dropped as late
        h.publish(_messages(frames[0], BASE_NS + 12 * NS + NS // 2), pose=False)
        status = h.wait_for(lambda: int(h.last_status().get("sync_waiting", 0)) >= 2
                            and int(h.last_status().get("sync_late", 0)) >= 3 and h.last_status(),
                            10.0, "sync counters")
        assert int(status["sets_received"]) == len(frames) + 2
        assert int(status["pose_unmatched"]) == 0

        # live parameter update: applied to the running trainer; invalid ones rejected
        from rclpy.parameter import Parameter

        result = node.set_parameters([Parameter("loss.lambda_diff", value=5.0)])[0]
        assert result.successful and not node.pending_reset
        applied = node.engine.submit(lambda t: (t.config.loss.lambda_diff,
                                                t.model.config.loss.lambda_diff)).result(10)
        assert applied == (5.0, 5.0) and node.get_parameter("loss.lambda_diff").value == 5.0
        result = node.set_parameters([Parameter("trainer.lr", value=1.0e-3)])[0]
        assert result.successful
        # The new base rate, times the schedule's current factor (online too).
        lrs = node.engine.submit(lambda t: [(g["lr"], t.lr_factor) for g in t.optimizer.param_groups]).result(10)
        assert lrs[0][0] == pytest.approx(1.0e-3 * lrs[0][1]) and 0.0 < lrs[0][1] <= 1.0
        # the descriptors carry the schema's ranges: rclpy refuses what is outside
        [described] = node.describe_parameters(["loss.lambda_diff"])
        assert described.floating_point_range[0].from_value == 0.0 and not described.read_only
        result = node.set_parameters([Parameter("loss.lambda_diff", value=-1.0)])[0]
        assert not result.successful and "loss.lambda_diff" in result.reason
        assert node.get_parameter("loss.lambda_diff").value == 5.0
        # an exclusive minimum (the range is inclusive) is refused by the node's validation
        result = node.set_parameters([Parameter("ros.extract_period_s", value=0.0)])[0]
        assert not result.successful and "ros.extract_period_s" in result.reason
        # parameters a running node cannot take are read-only
        [described] = node.describe_parameters(["ros.objects_topic"])
        assert described.read_only
        result = node.set_parameters([Parameter("ros.objects_topic", value="/elsewhere")])[0]
        assert not result.successful and node.get_parameter("ros.objects_topic").value == "objects"
        result = node.set_parameters([Parameter("model.num_channels", value=8)])[0]
        assert result.successful and node.pending_reset == {"model.num_channels"}
        h.wait_for(lambda: h.last_status().get("pending_reset") == "model.num_channels", 5.0,
                   "pending_reset in the status")
        assert int(h.last_status()["iteration"]) > before  # still the same model

        # reset: a new model from the next frames; ids keep counting
        last_id = node.engine.tracker.next_id
        assert h.call("reset").success
        assert not node.engine.has_model and node.engine.tracker.next_id == last_id
        assert not node.pending_reset
    finally:
        h.close()


def test_main_stops_cleanly_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    args = [sys.executable, "-m", "clusteringsdf_ros.mapping_node", "--ros-args",
            "-r", "__ns:=/t_main", "-p", "model.num_channels:=6",
            "-p", f"ros.output_dir:={tmp_path}", "-p", "ros.pose_source:=tf"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "objects on" in line:
                break
        assert any("objects on" in line for line in lines), "".join(lines)
        time.sleep(0.5)  # spinning
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20.0)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    if not _importable("tf2_ros"):
        assert text.count("tf2_ros is not importable") == 1


# --------------------------------------------------------------------------- callbacks fed directly


def _idle_node(mn, context, ns):
    """A node that is not spun: the tests call its input path themselves. It stays in the
    bounds bootstrap (no training) so the tests cost little."""
    node = mn.MappingNode(context=context, namespace=ns, parameter_overrides=_overrides(**{
        "ros.pose_source": "pose_topic", "ros.save_on_shutdown": False,
        "ros.sync_slop_s": 0.01}))
    node.engine.bootstrap_frames = 10_000
    return node


def _feed(node, msgs, *, pose=True, images=True):
    """What the subscriptions do: the pose callback, then each image into the synchroniser."""
    from clusteringsdf_ros import transforms as tfm

    if pose:
        node._on_pose_stamped(msgs["pose"])
    if images:
        for role, topic in zip(node._roles, node._input_topics):
            node.sync.sync.add(topic, tfm.stamp_to_ns(msgs[role].header.stamp), msgs[role])


def test_callback_times_window_and_summary(inp):
    times = inp.CallbackTimes(window=3)
    assert times.summary() == {"count": 0, "window": 0, "mean_ms": 0.0, "p50_ms": 0.0,
                               "p99_ms": 0.0, "max_ms": 0.0}
    for seconds in (0.001, 0.002, 0.003, 0.004, 0.010):
        times.add(seconds)
    s = times.summary()
    assert s["count"] == 5 and s["window"] == 3          # the last 3 kept
    assert s["max_ms"] == pytest.approx(10.0) and s["p50_ms"] == pytest.approx(4.0)
    assert s["mean_ms"] == pytest.approx(17.0 / 3, abs=1e-3)
    times.clear()
    assert times.summary()["count"] == 0


def test_status_has_callback_times_for_every_set_and_pose(mn, frames, ros_context):
    node = _idle_node(mn, ros_context, "/t_cbtimes")
    try:
        for i, frame in enumerate(frames[:4]):
            _feed(node, _messages(frame, BASE_NS + i * NS // 5))
        values = node.status_values()
        assert values["sets_received"] == 4 and values["frames_enqueued"] == 4
        assert values["callback_synced_count"] == values["sets_received"]
        assert values["callback_pose_count"] == 4
        for path in ("synced", "pose"):
            stats = [values[f"callback_{path}_{k}"] for k in ("mean_ms", "p50_ms", "p99_ms",
                                                              "max_ms")]
            assert all(isinstance(v, float) and v >= 0.0 for v in stats)
            assert stats[1] <= stats[2] <= stats[3]
    finally:
        node.destroy_node()


def test_time_jump_back_clears_and_accepts_the_new_timeline(mn, frames, ros_context):
    node = _idle_node(mn, ros_context, "/t_jump")
    counters = node.counters
    try:
        t_old = BASE_NS + 100 * NS
        for i in range(3):                                   # 100.0, 100.2, 100.4 s
            _feed(node, _messages(frames[i], t_old + i * NS // 5))
        assert counters["frames_enqueued"] == 3
        # a set whose pose has not come yet waits for it
        _feed(node, _messages(frames[3], t_old + 3 * NS // 5), pose=False)
        assert len(node.pending) == 1
        # less than TIME_JUMP_BACK_S back: the synchroniser drops it as late, and a set
        # that gets through anyway (message_filters does not drop) is out of order
        small = _messages(frames[0], t_old + NS // 2)
        _feed(node, small, pose=False)
        assert node.sync.sync.stats.total("dropped_late") == 4
        node._on_synced(*(small[role] for role in node._roles))
        assert counters["out_of_order"] == 1 and counters["time_jump_back"] == 0
        assert counters["sets_received"] == 5

        # the bag loops: pose first, then the images, 90 s back
        t_new = BASE_NS + 10 * NS
        _feed(node, _messages(frames[4], t_new))
        assert counters["time_jump_back"] == 1 and node.sync.sync.stats.jumps_back == 1
        assert len(node.pending) == 0 and len(node.poses) == 1   # only the new pose
        assert counters["frames_enqueued"] == 4 and counters["pose_unmatched"] == 0
        _feed(node, _messages(frames[5], t_new + NS // 5))     # the new timeline goes on
        assert counters["frames_enqueued"] == 5 and counters["time_jump_back"] == 1

        # again, images before their pose: the old poses must not answer for the new set
        t_3 = BASE_NS + 5 * NS
        _feed(node, _messages(frames[0], t_3), pose=False)
        assert counters["time_jump_back"] == 2 and len(node.poses) == 0
        assert len(node.pending) == 1 and counters["frames_enqueued"] == 5
        _feed(node, _messages(frames[0], t_3), images=False)
        assert len(node.pending) == 0 and counters["frames_enqueued"] == 6
        assert counters["pose_unmatched"] == 0 and counters["out_of_order"] == 1
        assert counters["sets_received"] == 8
        assert node.status_values()["callback_synced_count"] == 8
    finally:
        node.destroy_node()


def test_callback_benchmark_scene_is_a_valid_rgbd_stream():
    """The benchmark's synthetic camera (the benchmark itself runs by hand:
    python -m clusteringsdf_ros.bench_callbacks)."""
    from clusteringsdf_core.data.frame import check_pose
    from clusteringsdf_ros import bench_callbacks as bench

    args = bench._parser().parse_args([])
    assert (args.seconds, args.rate, args.width, args.height) == (20.0, 30.0, 640, 480)
    for k in (0, 7):
        T = check_pose(bench.camera_pose(k, 12))
        rgb, depth, ids = bench.render(T, 64, 48, 0.9 * 64)
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert np.isfinite(depth).all() and 0.1 < depth.min() and depth.max() < 8.0
        assert ids.dtype == np.uint16 and ids.min() >= 1 and ids.max() <= 6 + len(bench.BOXES)
        assert 5 in ids   # the camera looks down: the floor is in view
