"""`clusteringsdf ros recording`: a recording without GT objects -> bag without labels ->
bag player -> segmenter node -> mapping node -> saved map -> scored on the held-out views
(depth error, cross-view id consistency beside the segmenter's own ids), each node its
own process."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from clusteringsdf_core.config import dump_yaml
from clusteringsdf_ros.params import load_params_file

ITERATIONS = 150


def test_a_recording_goes_through_the_nodes_and_its_map_is_scored(tmp_path, repo_root, capsys):
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene, write_synthetic_scene
    from clusteringsdf_ros.cli import main

    scene = generate_scene(SyntheticSceneConfig(
        seed=0, room_width_range=(4.0, 4.5), room_depth_range=(3.5, 4.0), num_objects=3, num_small_objects=0,
        furniture="procedural", width=80, height=60, num_train=16, num_test=4, depth_noise=False))
    # the recording's own label variant: a segmenter's per-view ids, which only the score reads
    sim = segmenter_sim.preset("realistic")
    labelled = (segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=0),
                segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=0))
    root = write_synthetic_scene(scene, tmp_path / "recording", label_variant="sim", labelled_frames=labelled)

    config, ros = load_params_file(repo_root / "config" / "mapping.yaml")
    config = config.merged({"model.num_channels": 8, "trainer.iterations": ITERATIONS})
    ros = dataclasses.replace(ros, publish_period_s=1.0, extract_period_s=3.0, image_qos="reliable")
    params = tmp_path / "params.yaml"
    tree = dataclasses.asdict(config)
    tree["ros"] = dataclasses.asdict(ros)
    params.write_text(dump_yaml({"/**": {"ros__parameters": tree}}))
    out = tmp_path / "run"
    assert main(["ros", "recording", str(root), "--out", str(out), "--labels", "sim", "--config-file", str(params),
                 "--rate", "2", "--timeout", "900"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["ok"] and summary["reached_target"] and summary["iterations"] >= ITERATIONS
    assert summary["bag_player_exit"] == 0 and summary["objects"] >= 1
    # the nodes never saw the label variant: the bag holds sensor topics only
    assert summary["status"]["frames_enqueued"] == str(len(scene.dataset.train))
    assert summary["node_status"]["segmenter_node"]["frames_out"] == str(len(scene.dataset.train))
    score = json.loads((out / "without_gt.json").read_text())
    assert score["num_pairs"] >= 1 and score["raw"]["compared"] > 0 and score["fused"]["compared"] > 0
    assert np.isfinite(score["depth_median_m"])       # 150 iterations: the geometry has barely begun
    assert (out / "without_gt.png").exists() and (out / "maps").is_dir()
    printed = capsys.readouterr().out
    assert "id consistency, fused ids" in printed and f"{len(scene.dataset.train)} segmented" in printed
