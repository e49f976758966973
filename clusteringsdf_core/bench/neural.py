"""ClusteringSDF and the ablations of the paper's Table 2 as benchmark methods.

Each method trains a :class:`~clusteringsdf_core.training.Trainer` on the scene's
training frames with a preset (``cpu`` unless ``options["config"]["preset"]`` names
another) plus the variant's loss switches, then hands the trained model to the
harness as a :class:`~clusteringsdf_core.bench.prediction.ScenePrediction` (neural
label rendering for 2D, extracted meshes for 3D).

Variants (Table 2):
- ``clusteringsdf``: the full method;
- ``clusteringsdf_no_onehot`` / ``_no_reg`` / ``_no_fgbg``: one clustering term off;
- ``clusteringsdf_cross_view``: with L_cross_view (needs semantic labels);
- ``clusteringsdf_semantic``: the paper's semantic mode (channel k = class k, trained on
  the machine class labels with L_sem); no instances, so its score is mIoU;
- ``objectsdfpp_gt``: ObjectSDF++ (opacity loss, no clustering) on GT instance ids,
  which are consistent across views;
- ``objectsdfpp_machine``: ObjectSDF++ on the machine ids taken as if consistent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from clusteringsdf_core.bench.methods import Method, register_method
from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.config import Config

__all__ = ["VARIANTS", "train_and_predict", "variant_config"]

_NO_CLUSTERING = {"lambda_diff": 0.0, "lambda_onehot": 0.0, "lambda_reg": 0.0, "lambda_bg": 0.0,
                  "lambda_fg": 0.0}

#: ObjectSDF++: one SDF per object (the direct parametrisation; with the shared-geometry
#: one of our presets the opacity loss alone cannot move a channel's offsets off the
#: background's: measured, everything stayed in channel 0) and its opacity loss.
_OBJECTSDFPP = {"model": {"sdf_parametrization": "direct"},
                "loss": {**_NO_CLUSTERING, "lambda_opacity_label": 1.0}}

#: name -> (description, config overrides (nested sections), labels: "machine" or "gt")
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "clusteringsdf": ("ClusteringSDF, full method", {}, "machine"),
    "clusteringsdf_no_onehot": ("ClusteringSDF without L_onehot", {"loss": {"lambda_onehot": 0.0}},
                                "machine"),
    "clusteringsdf_no_reg": ("ClusteringSDF without L_reg", {"loss": {"lambda_reg": 0.0}}, "machine"),
    "clusteringsdf_no_fgbg": ("ClusteringSDF without L_fg-bg", {"loss": {"lambda_bg": 0.0, "lambda_fg": 0.0}},
                              "machine"),
    "clusteringsdf_cross_view": ("ClusteringSDF with L_cross_view", {"loss": {"lambda_cross_view": 1.0}},
                                 "machine"),
    "clusteringsdf_semantic": ("ClusteringSDF in semantic mode (channel = class; scored by mIoU)",
                               {"trainer": {"mode": "semantic"}}, "machine"),
    "objectsdfpp_gt": ("ObjectSDF++ opacity loss on GT instance ids (consistent across views)",
                       _OBJECTSDFPP, "gt"),
    "objectsdfpp_machine": ("ObjectSDF++ opacity loss on the machine ids taken as consistent",
                            _OBJECTSDFPP, "machine"),
}

#: Variants that read the frames' class labels.
_NEED_SEMANTIC = ("clusteringsdf_cross_view", "clusteringsdf_semantic")


def variant_config(name: str, overrides: Mapping[str, Any] | None = None, *,
                   seed: int | None = None) -> Config:
    """The configuration a variant trains with: preset, variant losses, ``seed`` (the
    benchmark's label seed) as ``trainer.seed``, then overrides (so an explicit
    ``trainer.seed`` override varies training alone, with the labels kept)."""
    from clusteringsdf_core.presets import preset

    overrides = dict(overrides or {})
    base = preset(str(overrides.pop("preset", "cpu")))
    _, variant, _ = VARIANTS[name]
    config = base.merged(variant) if variant else base
    if seed is not None:
        config = config.merged({"trainer.seed": int(seed)})
    return config.merged(overrides) if overrides else config


def _gt_labelled(dataset):
    """The dataset with GT instance ids (consistent across views) as its machine labels."""
    from clusteringsdf_core.data.dataset import SceneDataset
    from clusteringsdf_core.data.frame import FrameSequence

    train = dataset.train

    def load(i):
        f = train[i]
        if f.gt_instance is None:
            raise ValueError(f"frame {f.index} has no GT instance labels")
        return f.with_labels(instance=f.gt_instance, semantic=f.gt_semantic)

    fields = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(dataset)}
    fields["train"] = FrameSequence(len(train), load)
    fields["label_variant"] = "gt"
    return SceneDataset(**fields)


def train_and_predict(name: str, dataset, options: Mapping[str, Any]) -> ScenePrediction:
    """Train variant ``name`` on ``dataset`` and wrap the model as a prediction.

    ``options``: ``config`` (overrides, ``preset`` names the base), ``seed``, ``device``,
    ``time_budget_s``, ``progress`` (callable), and ``eval_at``: iterations at which a
    snapshot is kept and, after training, scored on the test views (the 2D metrics of
    ``evaluate.CURVE_METRICS``, label maps at half resolution) into ``meta["curve"]``:
    the time-to-quality curve. Scoring the curve is excluded from the method's time
    (``meta["self_eval_s"]``)."""
    import time

    from clusteringsdf_core.evaluation import model_prediction
    from clusteringsdf_core.training import Trainer

    config = variant_config(name, options.get("config"), seed=options.get("seed"))
    if options.get("device"):
        config = config.merged({"trainer.device": str(options["device"])})
    _, _, labels = VARIANTS[name]
    data = _gt_labelled(dataset) if labels == "gt" else dataset
    started = time.perf_counter()
    trainer = Trainer.from_dataset(data, config)
    reset_peak_memory(trainer.device)
    progress = options.get("progress")
    total = config.trainer.iterations
    eval_at = sorted({int(i) for i in options.get("eval_at") or () if 0 < int(i) < total})
    kept: list[tuple[float, object]] = []

    def report(t: Trainer) -> None:
        if progress is not None and t.iteration % 50 == 0:
            progress(t.iteration / max(total, 1), f"{name} it {t.iteration}")
        if len(kept) < len(eval_at) and t.iteration >= eval_at[len(kept)]:
            kept.append((time.perf_counter() - started, t.snapshot()))

    trainer.fit(progress=False, callback=report, time_budget_s=options.get("time_budget_s"))
    train_s = time.perf_counter() - started
    prediction = model_prediction(trainer.snapshot(), dataset.classes, method=name, device=trainer.device)
    prediction.meta.update({"train_s": train_s, "iterations": trainer.iteration,
                            "iterations_per_s": trainer.iteration / max(train_s, 1e-9),
                            "device": str(trainer.device), "losses": trainer.last_losses,
                            "peak_gpu_mib": peak_memory_mib(trainer.device)})
    if kept:
        eval_started = time.perf_counter()
        prediction.meta["curve"] = [_curve_point(dataset, snapshot, seconds, trainer.device)
                                    for seconds, snapshot in kept]
        prediction.meta["self_eval_s"] = time.perf_counter() - eval_started
    return prediction


def reset_peak_memory(device) -> None:
    """Start counting the peak memory of a CUDA ``device`` (nothing elsewhere)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device) -> float | None:
    """Peak tensor memory on a CUDA ``device`` since :func:`reset_peak_memory`, MiB (None elsewhere)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def _curve_point(dataset, snapshot, train_s: float, device) -> dict:
    from clusteringsdf_core.bench.evaluate import CURVE_METRICS, evaluate_prediction
    from clusteringsdf_core.evaluation import model_prediction

    frame = dataset.test[0]
    half = (max(frame.width // 2, 1), max(frame.height // 2, 1))
    prediction = model_prediction(snapshot, dataset.classes, extract=False, device=device,
                                  render_resolution=half)
    metrics = evaluate_prediction(dataset, prediction, compute_3d=False)
    return {"iteration": int(snapshot.iteration), "train_s": float(train_s),
            **{k: metrics.get(k) for k in CURVE_METRICS}}


def _register() -> None:
    for name, (description, _, labels) in VARIANTS.items():
        needs = ("torch", "depth") + (("instance_labels",) if labels == "machine" else ())
        if name in _NEED_SEMANTIC:
            needs = needs + ("semantic_labels",)
        register_method(Method(name=name, description=description,
                               run=lambda dataset, options, _n=name: train_and_predict(_n, dataset, options),
                               needs=needs), replace=True)


_register()
