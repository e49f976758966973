"""Benchmark side of the project: the prediction interface every method hands over,
and the baselines that need no neural field."""

from clusteringsdf_core.bench.prediction import LabelRenderer, ScenePrediction, gt_scene_labels

__all__ = ["ScenePrediction", "LabelRenderer", "gt_scene_labels"]
