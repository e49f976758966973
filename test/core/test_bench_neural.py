"""The trainer and its Table 2 variants as benchmark methods: each variant's config is
the full method's plus its switches, and every variant trains and is scored through the
harness (two iterations of a reduced model on a tiny scene)."""

import pytest

from clusteringsdf_core.bench import neural
from clusteringsdf_core.bench.harness import run_protocol
from clusteringsdf_core.bench.methods import get_method
from clusteringsdf_core.config import flatten
from clusteringsdf_core.data.dataset import load_scene
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene, write_synthetic_scene

TINY = {"model": {"num_channels": 24, "grid_levels": 2, "grid_max_resolution": 24, "sdf_hidden": [32],
                  "feature_dim": 8, "color_hidden": [16]},
        "sampling": {"rays_per_batch": 128}, "loss": {"eikonal_points": 64},
        "data": {"image_width": 48, "image_height": 36},
        "trainer": {"iterations": 2, "progress_bar": False}, "extract": {"resolution": 24}}


def test_variants_differ_from_the_full_method_by_their_switches_only():
    full = flatten(neural.variant_config("clusteringsdf"))
    expected = {
        "clusteringsdf_no_onehot": {"loss.lambda_onehot": 0.0},
        "clusteringsdf_no_reg": {"loss.lambda_reg": 0.0},
        "clusteringsdf_no_fgbg": {"loss.lambda_bg": 0.0, "loss.lambda_fg": 0.0},
        "clusteringsdf_cross_view": {"loss.lambda_cross_view": 1.0},
        "clusteringsdf_semantic": {"trainer.mode": "semantic"},
    }
    for name, switches in expected.items():
        config = flatten(neural.variant_config(name))
        assert {k: v for k, v in config.items() if full[k] != v} == switches, name
    for name in ("objectsdfpp_gt", "objectsdfpp_machine"):
        config = neural.variant_config(name)
        assert config.loss.lambda_opacity_label == 1.0 and config.model.sdf_parametrization == "direct"
        assert config.loss.lambda_diff == config.loss.lambda_reg == config.loss.lambda_onehot == 0.0
    assert "semantic_labels" in get_method("clusteringsdf_semantic").needs
    assert "instance_labels" not in get_method("objectsdfpp_gt").needs
    # Overrides go last; the preset is chosen by name.
    assert neural.variant_config("clusteringsdf_no_reg", {"preset": "gpu", "loss": {"lambda_reg": 5.0}}
                                 ).loss.lambda_reg == 5.0
    # The benchmark's label seed seeds training unless trainer.seed is set explicitly.
    assert neural.variant_config("clusteringsdf", seed=3).trainer.seed == 3
    assert neural.variant_config("clusteringsdf", {"trainer": {"seed": 7}}, seed=3).trainer.seed == 7
    with pytest.raises(KeyError):
        neural.variant_config("clusteringsdf", {"preset": "nope"})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    write_synthetic_scene(generate_scene(SyntheticSceneConfig(
        furniture="procedural", width=48, height=36, num_train=4, num_test=2, num_objects=2,
        num_small_objects=0)), root)
    return load_scene(root, labels=None)


def test_variants_with_their_own_paths_train_and_are_scored(scene, tmp_path):
    # The full method through the harness is measured by the benchmark; the variants
    # below take paths of their own (semantic mode, GT-labelled frames, cross-view rays).
    # The others differ only in loss weights (test above).
    names = ["clusteringsdf_semantic", "objectsdfpp_gt", "clusteringsdf_cross_view"]
    document = run_protocol("table_2", names, [scene], tmp_path, fail_fast=True, figure_views=0,
                            geometry_points=2000, report=lambda line: None,
                            method_options={n: {"config": TINY, "device": "cpu"} for n in names})
    methods = document["protocols"]["table_2"]["variants"]["realistic"]["methods"]
    for name in names:
        entry = methods[name]["scenes"][scene.name]
        assert "error" not in entry, (name, entry.get("error"))
        assert 0.0 <= entry["miou"] <= 100.0 and entry["prediction"]["meta"]["iterations"] == 2, name
    # Semantic mode predicts classes, not instances.
    assert methods["clusteringsdf_semantic"]["scenes"][scene.name]["pq_scene_things"] == 0.0


def test_time_to_quality_curve(scene, tmp_path):
    config = {**TINY, "trainer": {**TINY["trainer"], "iterations": 4}}
    document = run_protocol("baselines", ["clusteringsdf"], [scene], tmp_path, fail_fast=True,
                            figure_views=0, geometry_points=2000, report=lambda line: None,
                            method_options={"clusteringsdf": {"config": config, "eval_at": [2, 3, 9]}})
    entry = document["protocols"]["baselines"]["variants"]["realistic"]["methods"]["clusteringsdf"][
        "scenes"][scene.name]
    curve = entry["prediction"]["meta"]["curve"]
    # Points at 2 and 3 (9 is past the end: the final model is scored anyway).
    assert [p["iteration"] for p in curve] == [2, 3]
    assert curve[0]["train_s"] < curve[1]["train_s"] <= entry["prediction"]["meta"]["train_s"]
    assert all(0.0 <= p["pq_scene"] <= 100.0 for p in curve)
    # Scoring the curve is evaluation time, not the method's.
    self_eval = entry["prediction"]["meta"]["self_eval_s"]
    assert self_eval > 0 and entry["seconds"] == pytest.approx(entry["wall_s"] - self_eval)
    markdown = (tmp_path / "results.md").read_text()
    assert "### Time to quality" in markdown
    assert markdown.count(f"| clusteringsdf | {scene.name} | realistic |") == 3


def test_online_method_streams_the_frames_in_order_with_the_offline_budget(scene, tmp_path):
    # 4 frames, 1 iteration after each, 12 in all. The stream is shorter than the 5
    # frames the bounds wait for: the model is made from all 4 when it ends, and the
    # whole budget is trained after it.
    config = {**TINY, "trainer": {**TINY["trainer"], "iterations": 12},
              "stream": {"iterations_per_frame": 1, "extract_every": 6}}
    document = run_protocol("baselines", ["clusteringsdf_online"], [scene], tmp_path, fail_fast=True,
                            figure_views=0, geometry_points=2000, report=lambda line: None,
                            method_options={"clusteringsdf_online": {"config": config, "eval_at": [10]}})
    entry = document["protocols"]["baselines"]["variants"]["realistic"]["methods"][
        "clusteringsdf_online"]["scenes"][scene.name]
    meta = entry["prediction"]["meta"]
    assert meta["iterations"] == 12 and meta["frames"] == 4
    assert meta["stream_iterations"] == 0
    assert meta["counters"]["frames_enqueued"] == 4
    assert [p["iteration"] for p in meta["curve"]] == [10]
    assert 0.0 <= entry["pq_scene"] <= 100.0
    with pytest.raises(ValueError, match="unknown stream option"):
        from clusteringsdf_core.bench.online import stream_and_predict
        stream_and_predict(scene, {"config": {"stream": {"pace": 3}}})
