"""The demo's evaluation: ClusteringSDF beside the bench's baselines on the held-out views
of the bench's toy scene (floor and three boxes, 64x48, 6 + 2 views; machine ids
permuted per view, like a segmenter's)."""

import json
import math

import numpy as np
import pytest

from _bench_toy_scene import build_toy_scene
from clusteringsdf_core.bench.evaluate import evaluate_prediction
from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.cli import baseline_list, build_parser
from clusteringsdf_core.pipeline import (DEMO_BASELINES, beats_baselines, check_baselines, comparison_lines,
                                         evaluate_against_gt, metrics_table, results_markdown,
                                         score_with_baselines)
from clusteringsdf_core.presets import preset
from clusteringsdf_core.training import Trainer


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return build_toy_scene(tmp_path_factory.mktemp("toy"), n_views=8, width=64, height=48)


def _prediction(name, renderer) -> ScenePrediction:
    return ScenePrediction(method=name, mesh=None, vertex_instance=None, renderer=renderer)


def test_baselines_scored_beside_the_prediction_and_the_verdict_follows_pq(scene):
    gt = _prediction("gt", lambda frame: (frame.gt_semantic, frame.gt_instance))
    lines = []
    scored = score_with_baselines(scene, gt, ["naive_fusion", "felzenszwalb"], report=lines.append)
    assert list(scored["baselines"]) == ["naive_fusion", "felzenszwalb"]
    assert len(lines) == 2 and lines[0].startswith("baseline 1/2 naive_fusion: PQ^scene")
    for name, entry in scored["baselines"].items():
        assert math.isfinite(entry["pq_scene"]) and 0.0 <= entry["pq_scene"] < 100.0, name
        assert entry["seconds"] > 0 and entry["eval_s"] > 0
        assert entry["fscore"] is not None      # 3D metrics on the GT mesh: the baselines have a mesh
    # one TSDF mesh for both: the second is charged the build time it reused
    assert scored["baselines"]["naive_fusion"]["reused_s"] == 0.0
    assert scored["baselines"]["felzenszwalb"]["reused_s"] > 0.0
    assert scored["metrics"]["pq_scene"] == pytest.approx(100.0)
    assert scored["beats_baselines"] is True

    # a prediction with no segments at all is worse than every baseline
    blank = evaluate_prediction(scene, _prediction("blank", lambda f: (np.zeros_like(f.gt_semantic),
                                                                       np.zeros_like(f.gt_instance))))
    assert blank["pq_scene"] < min(b["pq_scene"] for b in scored["baselines"].values())
    assert beats_baselines(blank, scored["baselines"]) is False
    verdict, times = comparison_lines(blank, scored["baselines"])
    assert verdict.startswith("ClusteringSDF beats every baseline on PQ^scene: no")
    assert "naive_fusion" in times and "felzenszwalb" in times
    # a failed baseline has no score and does not count; none scored: no verdict
    assert beats_baselines(blank, {"hdbscan": {"error": "RuntimeError: x"}}) is None
    assert beats_baselines(blank, {**scored["baselines"], "hdbscan": {"error": "x"}}) is False
    table = metrics_table({"clusteringsdf": blank, **scored["baselines"], "hdbscan": {"error": "x"}})
    assert "| hdbscan | - |" in table and "| felzenszwalb |" in table


def test_no_baselines_no_rows_and_no_verdict(scene):
    gt = _prediction("gt", lambda frame: (frame.gt_semantic, frame.gt_instance))
    scored = score_with_baselines(scene, gt, [])
    assert scored["baselines"] == {} and scored["beats_baselines"] is None
    assert comparison_lines(scored["metrics"], {}) == []


def test_evaluate_against_gt_has_a_row_per_baseline(scene, tmp_path):
    # two steps of a tiny field; its surface fragments are all dropped (min_component_faces):
    # the geometry metrics of an untrained blob take seconds and mean nothing
    config = preset("cpu").merged({
        "model": {"num_channels": 6, "grid_levels": 2, "grid_max_resolution": 24, "sdf_hidden": [32],
                  "feature_dim": 8, "color_hidden": [16]},
        "sampling": {"rays_per_batch": 128}, "loss": {"eikonal_points": 64},
        "data": {"image_width": 64, "image_height": 48},
        "extract": {"resolution": 16, "min_component_faces": 10**6},
        "trainer": {"iterations": 2, "progress_bar": False, "device": "cpu"},
    })
    trainer = Trainer.from_dataset(scene, config)
    trainer.fit()
    report = evaluate_against_gt(scene, trainer.snapshot(), [], tmp_path, baselines=["hdbscan"], figure_views=2)
    assert list(report["baselines"]) == ["hdbscan"] and math.isfinite(report["baselines"]["hdbscan"]["pq_scene"])
    rows = [line.split("|")[1].strip() for line in report["table"].splitlines()[2:]]
    assert rows == ["clusteringsdf", "hdbscan"]
    expected = beats_baselines(report["metrics"]["clusteringsdf"], report["baselines"])
    assert report["beats_baselines"] is expected is not None
    assert report["comparison"][0].endswith(
        f"best baseline hdbscan {report['baselines']['hdbscan']['pq_scene']:.1f})")
    assert any(f.endswith("labels.png") for f in report["figures"])
    markdown = results_markdown(report)
    assert markdown.startswith("| method |") and "ClusteringSDF beats every baseline" in markdown
    json.dumps({k: report[k] for k in ("metrics", "baselines", "beats_baselines")}, default=float)


def test_baseline_names_checked_before_anything_runs():
    assert list(DEMO_BASELINES) == check_baselines(DEMO_BASELINES)
    with pytest.raises(ValueError, match="the bench's baselines are"):
        check_baselines(["naive_fusion", "clusteringsdf"])     # a neural method is no baseline
    with pytest.raises(ValueError, match="twice"):
        check_baselines(["hdbscan", "hdbscan"])
    assert baseline_list("none") == [] and baseline_list("hdbscan, naive_fusion") == ["hdbscan", "naive_fusion"]
    parser = build_parser()
    assert parser.parse_args(["demo", "--baselines", "none"]).baselines == []
    assert parser.parse_args(["demo"]).baselines is None
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--baselines", "no_such_baseline"])


def test_the_figure_views_are_drawn_from_the_renders_the_metrics_made():
    import types

    from clusteringsdf_core.pipeline import _keeping

    calls = []

    def renderer(frame):
        calls.append(frame.index)
        return np.full((2, 2), frame.index), np.full((2, 2), -frame.index)

    render = _keeping(renderer, {3, 7})
    frames = [types.SimpleNamespace(index=i) for i in (1, 3, 5, 7)]
    first = [render(f) for f in frames]            # the metrics' pass
    again = [render(f) for f in frames[1::2]]      # the figure's views
    assert calls == [1, 3, 5, 7]
    assert all(a is b for a, b in zip(again, first[1::2]))
    render(frames[0])                              # a frame not in the figure is rendered anew
    assert calls == [1, 3, 5, 7, 1]
