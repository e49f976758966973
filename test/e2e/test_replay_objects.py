"""End to end, in separate processes: bag_player -> mapping_node -> a planner-like subscriber.

A small synthetic room (three pieces of furniture, machine ids renumbered in every
view) is written as a rosbag2, replayed by the bag player process into the mapping node
process, which trains ClusteringSDF online; this test process subscribes to
``/objects`` like a planner and checks what it receives against the ground truth.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from clusteringsdf_core.config import dump_yaml
from clusteringsdf_ros.params import load_params_file

#: Iterations the node trains before the objects are checked (the budget of this test).
ITERATIONS = 900


def _aabb_of_box(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    half = np.abs(np.array([[c, -s], [s, c]])) @ (size[:2] / 2)
    half = np.array([half[0], half[1], size[2] / 2])
    return np.stack([center - half, center + half])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None))
    return float(inter / (np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inter))


@pytest.fixture(scope="module")
def replay_inputs(tmp_path_factory, repo_root):
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
    from clusteringsdf_ros.bags import write_bag_from_dataset

    root = tmp_path_factory.mktemp("e2e")
    scene = generate_scene(SyntheticSceneConfig(
        seed=0, room_width_range=(4.0, 4.5), room_depth_range=(3.5, 4.0), num_objects=3, num_small_objects=0,
        furniture="procedural", width=80, height=60, num_train=30, num_test=0, depth_noise=False))
    frames = segmenter_sim.simulate_dataset(scene.dataset.train, segmenter_sim.preset("gt"), seed=0)
    dataset = dataclasses.replace(scene.dataset, train=frames)
    written = write_bag_from_dataset(dataset, root / "bag", frame_rate_hz=10.0)

    config, ros = load_params_file(repo_root / "config" / "mapping.yaml")
    config = config.merged({"model.num_channels": 8, "model.init_seeds_observed": 1.0,
                            "loss.reg_reference_channels": 50,
                            "trainer.iterations": ITERATIONS})
    ros = dataclasses.replace(ros, publish_period_s=1.0, extract_period_s=4.0, image_qos="reliable",
                              output_dir=str(root / "maps"), save_on_shutdown=False)
    params = root / "params.yaml"
    tree = {k: v for k, v in dataclasses.asdict(config).items()}
    tree["ros"] = dataclasses.asdict(ros)
    params.write_text(dump_yaml({"/**": {"ros__parameters": tree}}))
    gt_boxes = {o.instance_id: o.mesh().bounds for o in scene.objects}
    return written.path, params, gt_boxes, root, (written.start_ns, written.end_ns)


def test_replayed_bag_gives_the_gt_objects_with_stable_ids(replay_inputs):
    import rclpy

    from clusteringsdf_ros.demo import ReplaySession, local_dds_defaults
    from clusteringsdf_ros.launch_spec import replay_nodes

    bag, params, gt_boxes, root, (bag_start_ns, bag_end_ns) = replay_inputs
    local_dds_defaults()
    specs = replay_nodes(str(bag), str(params))
    context_owned = not rclpy.ok()
    if context_owned:
        rclpy.init()
    try:
        with ReplaySession(specs, log_dir=root / "logs") as session:
            alive = ["mapping_node"]
            assert session.wait_for(lambda: session.finished("bag_player"), 120, fail_if_dead=alive)
            assert session.returncode("bag_player") == 0
            assert session.wait_for(lambda: session.status_value("iteration", 0, int) >= ITERATIONS, 900,
                                    fail_if_dead=alive), f"training stalled: {session.status}"
            # Two consecutive publications of two different extractions, both after the budget.
            start = len(session.objects)

            def two_new_extractions():
                fresh = [o for o in session.objects[start:] if o.iteration >= ITERATIONS]
                return len({o.iteration for o in fresh}) >= 2

            assert session.wait_for(two_new_extractions, 120, fail_if_dead=alive), session.status
            status = dict(session.status)
            fresh = [o for o in session.objects[start:] if o.iteration >= ITERATIONS]
    finally:
        if context_owned:
            rclpy.shutdown()

    # Every frame of the bag reached the trainer; no input was refused.
    assert int(status["frames_enqueued"]) == 30, status
    for counter in ("bad_encoding", "size_mismatch", "pose_unmatched", "bad_pose", "trainer_errors"):
        assert status[counter] == "0", (counter, status)

    first = fresh[0]
    second = next(o for o in fresh if o.iteration != first.iteration)
    # the outputs are stamped in the bag's time base (the player's /clock, use_sim_time)
    assert bag_start_ns <= first.stamp_ns <= bag_end_ns, (first.stamp_ns, bag_start_ns, bag_end_ns)
    # The planner's view: as many objects as in the room (within one) ...
    assert abs(len(second.ids) - len(gt_boxes)) <= 1, (second.ids, second.sizes)
    # ... each GT object overlapped by its own published box ...
    boxes = [_aabb_of_box(c, s, y) for c, s, y in zip(second.centers, second.sizes, second.yaws)]
    ious = np.array([[_iou(b, g) for b in boxes] for g in gt_boxes.values()])
    for g, row in enumerate(ious):
        assert row.max() > 0.1, f"GT object {list(gt_boxes)[g]} has no published box over it: {ious.round(2)}"
    assert len(set(ious.argmax(axis=1))) == len(gt_boxes), f"two GT objects share one box: {ious.round(2)}"
    print(f"\n/objects after {second.iteration} iterations: ids {second.ids}, GT x box IoU\n{ious.round(2)}")
    # ... and every object of one extraction keeps its id in the next. Training goes on
    # between the two, so a piece that has persisted through confirm_after extractions
    # may be added under a new id (seen once in five runs: a split-off part of a GT
    # object); what a planner must not see is a known object renamed or dropped.
    assert set(first.ids) <= set(second.ids), (first.ids, second.ids)


def _params_with(params, root, name: str, **ros_fields):
    """A copy of the parameter file ``params`` with ``ros_fields`` changed."""
    config, ros = load_params_file(params)
    tree = dataclasses.asdict(config)
    tree["ros"] = dataclasses.asdict(dataclasses.replace(ros, **ros_fields))
    path = root / f"{name}.yaml"
    path.write_text(dump_yaml({"/**": {"ros__parameters": tree}}))
    return path


def test_a_killed_node_restarts_from_its_autosave_with_its_ids(replay_inputs):
    # kill -9 while training, then a new node with ros.initial_map: it goes on from the
    # last autosave (at most one period old), not from zero, and publishes the objects
    # under the ids the planner already knew.
    import rclpy

    from clusteringsdf_ros.demo import ReplaySession, local_dds_defaults
    from clusteringsdf_ros.launch_spec import mapping_nodes, replay_nodes

    bag, params, _, root, _ = replay_inputs
    out = root / "restart"
    out.mkdir()
    period = 2.0
    first = _params_with(params, out, "first", autosave_period_s=period, extract_period_s=2.0,
                         output_dir=str(out / "maps"))
    local_dds_defaults()
    context_owned = not rclpy.ok()
    if context_owned:
        rclpy.init()
    try:
        with ReplaySession(replay_nodes(str(bag), str(first)), log_dir=out / "logs_first") as session:
            alive = ["mapping_node"]
            assert session.wait_for(lambda: any(o.ids for o in session.objects), 600, fail_if_dead=alive), \
                f"no objects published: {session.status}"
            seen = session.status_value("autosaves", 0, int)
            # two more autosaves: the second began after the objects had their ids
            assert session.wait_for(lambda: session.status_value("autosaves", 0, int) >= seen + 2, 120,
                                    fail_if_dead=alive), session.status
            ids_before = set().union(*(o.ids for o in session.objects))
            saved_iteration = session.status_value("autosave_iteration", -1, int)
            killed_at = session.status_value("iteration", 0, int)
            session.procs["mapping_node"].kill()                     # SIGKILL: no shutdown save
            assert session.procs["mapping_node"].wait(timeout=30) == -9
        runs = list((out / "maps" / "autosave").iterdir())
        assert len(runs) == 1 and 1 <= len(list(runs[0].glob("autosave_*.pt"))) <= 2

        second = _params_with(params, out, "second", autosave_period_s=period, output_dir=str(out / "maps"),
                              initial_map=str(out / "maps" / "autosave"))
        with ReplaySession(mapping_nodes(str(second), pose_source="pose_topic"),
                           log_dir=out / "logs_second") as session:
            alive = ["mapping_node"]
            assert session.wait_for(lambda: session.objects and session.status, 120, fail_if_dead=alive), \
                "the restarted node published no objects"
            resumed_ids = session.objects[0].ids
            status = dict(session.status)
            log = (out / "logs_second" / "mapping_node.log").read_text()
            loaded = re.search(r"map loaded from \S+: iteration (\d+)", log)
            assert loaded, log[-2000:]
            loaded_iteration = int(loaded.group(1))
            assert session.wait_for(lambda: session.status_value("iteration", 0, int) > loaded_iteration + 5,
                                    120, fail_if_dead=alive), "the restarted node does not train"
    finally:
        if context_owned:
            rclpy.shutdown()
    assert "initial_map_error" not in status, status
    # resumed from the newest autosave: no older than the last one reported before the kill
    assert saved_iteration <= loaded_iteration <= killed_at, (saved_iteration, loaded_iteration, killed_at)
    assert resumed_ids and set(resumed_ids) <= ids_before, (resumed_ids, ids_before)
    print(f"\nkilled at iteration {killed_at} (last autosave reported: {saved_iteration}); restarted at "
          f"{loaded_iteration} with ids {resumed_ids} (known before: {sorted(ids_before)})")
