"""End to end with commands alone, as a ScanNet user without 2D labels would: a ``.sens``
file -> ``clusteringsdf bag from-dataset --no-labels`` -> bag player -> segmenter node
(classical backend) -> mapping node -> ``/objects``, each node its own process."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np

from clusteringsdf_core.config import dump_yaml
from clusteringsdf_ros.params import load_params_file

#: Iterations the node trains before the objects are checked.
ITERATIONS = 300
FRAMES = 20


def test_a_sens_file_without_labels_replays_through_the_segmenter_into_objects(tmp_path, repo_root):
    import rclpy

    from clusteringsdf_core.data.formats.sens import write_sens
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
    from clusteringsdf_ros.demo import ReplaySession, local_dds_defaults
    from clusteringsdf_ros.launch_fallback import _parser, specs_from_args

    scene = generate_scene(SyntheticSceneConfig(
        seed=0, room_width_range=(4.0, 4.5), room_depth_range=(3.5, 4.0), num_objects=3, num_small_objects=0,
        furniture="procedural", width=80, height=60, num_train=FRAMES, num_test=0, depth_noise=False))
    sens = write_sens(tmp_path / "scene0000_00.sens", scene.dataset.train)
    bag = tmp_path / "bag"
    written = subprocess.run([sys.executable, "-m", "clusteringsdf_core.cli", "bag", "from-dataset", str(sens),
                              str(bag), "--no-labels", "--frame-rate-hz", "2"],
                             capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr[-3000:]
    assert "/segmentation/instance" not in written.stdout and "/color/image_raw" in written.stdout
    in_bag = int(re.search(r": (\d+) frames over", written.stdout).group(1))   # the reader holds some out
    assert FRAMES * 0.8 <= in_bag <= FRAMES

    config, ros = load_params_file(repo_root / "config" / "mapping.yaml")
    config = config.merged({"model.num_channels": 8, "trainer.iterations": ITERATIONS})
    ros = dataclasses.replace(ros, publish_period_s=1.0, extract_period_s=3.0, image_qos="reliable",
                              output_dir=str(tmp_path / "maps"), save_on_shutdown=False)
    params = tmp_path / "params.yaml"
    tree = dataclasses.asdict(config)
    tree["ros"] = dataclasses.asdict(ros)
    params.write_text(dump_yaml({"/**": {"ros__parameters": tree}}))
    # the command line of `clusteringsdf ros run replay --use-segmenter`
    specs = specs_from_args(_parser().parse_args(["replay", "--bag", str(bag), "--config-file", str(params),
                                                  "--use-segmenter"]))
    assert [s.name for s in specs] == ["bag_player", "mapping_node", "segmenter_node"]
    local_dds_defaults()
    context_owned = not rclpy.ok()
    if context_owned:
        rclpy.init()
    try:
        with ReplaySession(specs, log_dir=tmp_path / "logs") as session:
            alive = ["mapping_node", "segmenter_node"]
            assert session.wait_for(lambda: session.finished("bag_player"), 180, fail_if_dead=alive)
            assert session.returncode("bag_player") == 0
            assert session.wait_for(lambda: session.status_value("iteration", 0, int) >= ITERATIONS, 600,
                                    fail_if_dead=alive), f"training stalled: {session.status}"
            assert session.wait_for(lambda: any(o.iteration >= ITERATIONS and o.ids for o in session.objects),
                                    120, fail_if_dead=alive), f"no objects: {session.status}"
            status = dict(session.status)
            segmenter = session.node_status("segmenter_node")
            seen = next(o for o in session.objects if o.iteration >= ITERATIONS and o.ids)
    finally:
        if context_owned:
            rclpy.shutdown()
    # every frame went through the segmenter into the trainer, nothing was refused: the
    # replay's segmenter queues frames while busy instead of dropping them
    # (REPLAY_SEGMENTER_QUEUE), and its status goes on after the bag's clock stops
    accounting = {k: int(segmenter[k]) for k in ("frames_in", "frames_out", "dropped_busy", "segmenter_errors")}
    assert accounting == {"frames_in": in_bag, "frames_out": in_bag, "dropped_busy": 0, "segmenter_errors": 0}, \
        (accounting, segmenter)
    assert int(status["frames_enqueued"]) == in_bag, (status, segmenter)
    for counter in ("bad_encoding", "size_mismatch", "pose_unmatched", "bad_pose", "bad_labels", "trainer_errors"):
        assert status[counter] == "0", (counter, status)
    # the objects lie in the room the .sens recorded
    lo, hi = scene.dataset.bounds
    centres = np.asarray(seen.centers)
    assert np.all(centres >= lo - 0.2) and np.all(centres <= hi + 0.2), (centres, scene.dataset.bounds)
    print(f"\n/objects from the segmenter's ids after {seen.iteration} iterations: ids {seen.ids}, "
          f"classes {seen.classes}")
