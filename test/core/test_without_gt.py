"""Scoring a map without GT objects (depth error, cross-view id consistency, picture):
with a stand-in renderer that returns the scene's GT ids (consistent across views) and
measured depth, and through `clusteringsdf consistency` on a trained checkpoint."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from clusteringsdf_core.bench.without_gt import evaluate_without_gt
from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene, write_synthetic_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SyntheticSceneConfig(seed=2, furniture="procedural", width=64, height=48,
                                               num_train=6, num_test=5, num_objects=3, num_small_objects=0))


class GtRenderer:
    """Renders the frames' GT ids (one id per object in every view) and measured depth,
    shifted by ``depth_offset_m``."""

    def __init__(self, depth_offset_m: float = 0.0):
        self.depth_offset_m = depth_offset_m

    def __call__(self, frame):
        return (frame.gt_semantic.astype(np.int32), frame.gt_instance.astype(np.int32),
                frame.depth_m.astype(np.float32) + self.depth_offset_m)


def test_fused_ids_agree_across_views_and_per_view_ids_do_not(scene):
    frames = segmenter_sim.simulate_dataset(scene.dataset.test, segmenter_sim.preset("0%"), seed=0)
    done = []
    result = evaluate_without_gt(GtRenderer(), frames, scale=0.5, min_overlap=0.2,
                                 class_name=scene.dataset.classes.name_of, progress=done.append)
    assert len(done) == len(frames) and result.views == [f.index for f in frames]
    assert len(result.pairs) >= 2 and all(o >= 0.2 for _, _, o in result.pairs)
    assert result.depth_median_m == 0.0 and result.depth_per_view_m == [0.0] * len(frames)
    assert result.fused["consistency"] > 0.9 and result.fused["compared"] > 100
    # the simulated segmenter re-draws its ids per view: they agree only by chance
    assert result.raw["consistency"] < 0.5 * result.fused["consistency"]
    assert result.summary()["fused_over_raw"] > 2.0
    gt_things = {int(i) for f in frames for i in np.unique(f.gt_instance) if i > 0}
    assert set(result.objects) <= gt_things and result.objects
    assert result.sheet.ndim == 3 and result.sheet.dtype == np.uint8
    shifted = evaluate_without_gt(GtRenderer(depth_offset_m=0.05), frames, scale=0.5, min_overlap=0.2)
    assert shifted.depth_median_m == pytest.approx(0.05, abs=1e-5)
    # objects the segmenter names apart in a view: the GT ids keep them apart, one id for
    # everything merges every pair while its consistency is perfect
    things = set(scene.dataset.classes.thing_ids).__contains__
    result = evaluate_without_gt(GtRenderer(), frames, scale=1.0, min_overlap=0.2, is_object=things)
    assert result.merged["pairs"] > 0 and result.merged["merged"] == 0
    one = evaluate_without_gt(lambda f: (f.gt_semantic, np.ones_like(f.gt_instance), f.depth_m), frames,
                              scale=1.0, min_overlap=0.2, is_object=things)
    assert one.fused["consistency"] == 1.0 and one.merged["share_merged"] == 1.0
    assert one.summary()["merged"]["pairs"] == result.merged["pairs"]


def test_views_without_segmenter_ids_report_no_raw_measure(scene):
    result = evaluate_without_gt(GtRenderer(), scene.dataset.test, scale=0.5, min_overlap=0.2)
    assert result.raw is None and result.fused["consistency"] > 0.9
    assert "fused_over_raw" not in result.summary()
    with pytest.raises(ValueError, match="at least two held-out views"):
        evaluate_without_gt(GtRenderer(), scene.dataset.test[:1])


def test_the_consistency_command_scores_a_checkpoint(scene, tmp_path, capsys):
    from clusteringsdf_core import pipeline
    from clusteringsdf_core.cli import main
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_core.presets import preset

    sim = segmenter_sim.preset("realistic")
    labelled = (segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=0),
                segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=0))
    root = write_synthetic_scene(scene, tmp_path / "scene", label_variant="sim", labelled_frames=labelled)
    config = preset("cpu").merged({
        "model": {"num_channels": 6, "grid_levels": 2, "grid_max_resolution": 24, "sdf_hidden": [32],
                  "feature_dim": 8, "color_hidden": [16]},
        "sampling": {"rays_per_batch": 128}, "loss": {"eikonal_points": 64},
        "data": {"image_width": 64, "image_height": 48}, "extract": {"resolution": 32},
        "trainer": {"iterations": 3, "progress_bar": False, "device": "cpu"}})
    pipeline.train(open_dataset(str(root), labels="sim"), config, tmp_path / "run", progress=False)
    out = tmp_path / "scored"
    assert main(["consistency", str(tmp_path / "run" / "checkpoint.pt"), str(root), "--labels", "sim",
                 "--out", str(out), "--min-overlap", "0.2"]) == 0
    summary = json.loads((out / "without_gt.json").read_text())
    assert summary["iteration"] == 3 and summary["labels"] == "sim" and len(summary["views"]) == 5
    assert summary["num_pairs"] >= 2 and summary["raw"]["compared"] > 0
    assert np.isfinite(summary["depth_median_m"])
    assert cv2.imread(str(out / "without_gt.png")) is not None
    printed = capsys.readouterr().out
    assert "id consistency, fused ids" in printed and "depth error, median" in printed
    one_view = write_synthetic_scene(scene, tmp_path / "one_view", labelled_frames=(labelled[0], labelled[1][:1]))
    with pytest.raises(SystemExit, match="has 1 held-out views; two or more are needed"):
        main(["consistency", str(tmp_path / "run" / "checkpoint.pt"), str(one_view), "--out", str(out)])


def test_a_labelled_mesh_renders_its_labels_and_the_measured_depth(scene, tmp_path):
    """A baseline's answer (a labelled mesh) is scored like a neural map: the GT mesh as
    the prediction renders the synthetic frames' own depth and GT ids."""
    from clusteringsdf_core.bench.prediction import ScenePrediction, gt_scene_labels
    from clusteringsdf_core.data.formats import open_dataset

    dataset = open_dataset(str(write_synthetic_scene(scene, tmp_path / "scene")))
    mesh, vertex_instance, vertex_semantic = gt_scene_labels(dataset)
    ids = [int(i) for i in np.unique(vertex_instance) if i > 0]
    prediction = ScenePrediction(method="gt", mesh=mesh, vertex_instance=vertex_instance,
                                 vertex_semantic=vertex_semantic, instance_class={i: 1 for i in ids},
                                 instance_score={i: 1.0 for i in ids})
    frame = dataset.test[0]
    semantic, instance, depth = prediction.render_labels_and_depth(frame)
    np.testing.assert_array_equal((semantic, instance), prediction.render_labels(frame))
    seen = depth > 0
    assert seen.mean() > 0.9 and np.all(seen[instance > 0])
    assert np.median(np.abs(depth[seen] - frame.depth_m[seen])) < 0.01     # the sensor noise: mm
    result = evaluate_without_gt(prediction.render_labels_and_depth, dataset.test, scale=1.0,
                                 min_overlap=0.2)
    assert result.fused["consistency"] > 0.9 and result.depth_median_m < 0.01


def test_the_without_gt_protocol_compares_methods_on_a_recording(scene, tmp_path, capsys):
    """`clusteringsdf bench --protocol without_gt`: each method trained on the recording's
    own machine labels, scored on its held-out views, in one table with the segmenter."""
    from clusteringsdf_core.bench.without_gt import run_without_gt
    from clusteringsdf_core.cli import main
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_core.data.formats.sens import write_sens
    from clusteringsdf_core.segment.backends import make_segmenter
    from clusteringsdf_core.segment.dataset_labels import segment_dataset

    # what a user has: a recording without GT, labelled by `clusteringsdf segment`
    sens = write_sens(tmp_path / "scene0000_00.sens", list(scene.dataset.train) + list(scene.dataset.test))
    root = tmp_path / "recording"
    segment_dataset(open_dataset(sens, test_every=2), root, make_segmenter("classical"), variant="classical")
    assert open_dataset(str(root), labels="classical").test[0].gt_instance is None
    out = tmp_path / "bench"
    assert main(["bench", "--protocol", "without_gt", "--scene", str(root), "--labels", "classical",
                 "--methods", "naive_fusion,hdbscan", "--out", str(out)]) == 0
    document = json.loads((out / "without_gt.json").read_text())
    name = open_dataset(str(root)).name
    runs = document["runs"][name]
    for method in ("naive_fusion", "hdbscan"):
        entry = runs[method]
        assert "error" not in entry, entry.get("error")
        assert 0.0 <= entry["fused_consistency"] <= 1.0 and entry["objects"] >= 1
        assert entry["depth_median_cm"] < 5.0                  # a TSDF mesh of the same depth
        assert (out / f"without_gt_{name}_{method}.png").exists()
    markdown = (out / "without_gt.md").read_text()
    assert "| segmenter ids (per view) |" in markdown and f"| {name} | hdbscan |" in markdown
    assert "[without_gt]" in capsys.readouterr().out
    # the neural method through the same runner, two training seeds (simulated labels)
    sim = segmenter_sim.preset("realistic")
    labelled = (segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=0),
                segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=0))
    root = write_synthetic_scene(scene, tmp_path / "scene", label_variant="sim", labelled_frames=labelled)
    config = {"model": {"num_channels": 6, "grid_levels": 2, "grid_max_resolution": 24, "sdf_hidden": [32],
                        "feature_dim": 8, "color_hidden": [16]},
              "sampling": {"rays_per_batch": 128}, "loss": {"eikonal_points": 64},
              "data": {"image_width": 64, "image_height": 48}, "extract": {"resolution": 32},
              "trainer": {"iterations": 2, "progress_bar": False}}
    document = run_without_gt(["clusteringsdf"], [open_dataset(str(root), labels="sim")], out, seeds=[0, 1],
                              method_options={"clusteringsdf": {"config": config, "device": "cpu"}},
                              fail_fast=True, report=lambda line: None)
    assert set(document["runs"]) == {f"{scene.dataset.name}/seed0", f"{scene.dataset.name}/seed1"}
    assert all(np.isfinite(block["clusteringsdf"]["depth_median_cm"]) for block in document["runs"].values())
    with pytest.raises(ValueError, match="one held-out view with depth; two or more are needed"):
        run_without_gt(["hdbscan"], [dataclasses.replace(open_dataset(str(root)), test=labelled[1][:1])], out)
    with pytest.raises(SystemExit, match="give the recordings as --scene"):
        main(["bench", "--protocol", "without_gt", "--seeds", "0", "--out", str(out)])
    with pytest.raises(SystemExit, match="one machine-label variant"):
        main(["bench", "--protocol", "without_gt", "--scene", str(root), "--labels", "a,b", "--out", str(out)])
