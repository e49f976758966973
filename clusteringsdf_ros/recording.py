"""A recording without GT objects through the nodes, scored: ``clusteringsdf ros recording``.

What a robot does with a real RGB-D stream and no 2D segmenter of its own, measured:

1. the recording (any dataset the readers open: a ScanNet ``.sens`` or export folder,
   the canonical layout, e.g. ``../shared/data/redkitchen_7scenes``) becomes a rosbag2
   of its training frames without any label topic (reused while the recording is
   unchanged);
2. ``bag_player`` -> ``segmenter_node`` (the default ``detector`` backend) ->
   ``mapping_node`` run as separate processes, as ``replay.launch.py
   use_segmenter:=true`` starts them (:mod:`clusteringsdf_ros.launch_spec`);
3. when the bag has ended and the mapping node has trained ``trainer.iterations``
   steps, ``~/save_map`` and the nodes stop (:func:`~clusteringsdf_ros.demo.map_through_nodes`);
4. the saved map is scored on the recording's held-out views by
   :mod:`clusteringsdf_core.bench.without_gt`: depth error, cross-view id consistency
   of the map's ids and, when the recording has a label variant (``labels``, e.g.
   written by ``clusteringsdf segment``), of the segmenter's own per-view ids; the
   objects with their classes and a picture (``without_gt.json``, ``without_gt.png``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["run_recording"]


def run_recording(dataset_path: str | Path, out_dir: str | Path, *, labels: str | None = None,
                  config_file: str | None = None, iterations: int | None = None, rate: float = 1.0,
                  timeout_s: float = 3600.0, scale: float = 0.5, min_overlap: float = 0.3,
                  progress: bool = True) -> dict:
    """The job of the module docstring; returns the summary also written to
    ``out_dir/results.json`` (``ok`` False when nothing was learned)."""
    from clusteringsdf_core.bench.without_gt import evaluate_without_gt, write_report
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_core.evaluation import model_prediction
    from clusteringsdf_core.training import Trainer
    from clusteringsdf_ros.demo import local_dds_defaults, map_through_nodes, write_demo_bag
    from clusteringsdf_ros.launch_fallback import _share_config
    from clusteringsdf_ros.launch_spec import replay_nodes
    from clusteringsdf_ros.params import load_params_file

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    dataset = open_dataset(dataset_path, labels=labels)
    source = Path(dataset_path)
    mtime = max(p.stat().st_mtime for p in (source, source / "scene.json") if p.exists())
    bag, written = write_demo_bag(dataset, out / "bag", source_mtime=mtime, include_labels=False,
                                  include_semantic=False, include_confidence=False)
    timings["bag_write_s"] = time.perf_counter() - started

    config_file = str(Path(config_file or _share_config()).resolve())
    config, _ = load_params_file(config_file)
    target = int(iterations if iterations is not None else config.trainer.iterations)
    specs = replay_nodes(str(bag), config_file, rate=rate, output_dir=str(out / "maps"), use_segmenter=True)
    specs = [dataclasses.replace(s, parameters={**s.parameters, "ros.save_on_shutdown": False})
             if s.name == "mapping_node" else s for s in specs]
    summary: dict[str, Any] = {"ok": False, "recording": str(dataset_path), "labels": labels, "bag": str(bag),
                               "bag_written": written, "config_file": config_file, "target_iterations": target,
                               "logs": str(out / "logs"), "dds_settings": local_dds_defaults()}
    run = map_through_nodes(specs, target, timeout_s, out / "logs", progress=progress)
    timings.update(run.pop("timings"))
    folder = run.pop("folder")
    summary.update(map_folder=str(folder), objects_publications=len(run.pop("publications")), **run)

    t0 = time.perf_counter()
    trainer = Trainer.load_checkpoint(folder / "checkpoint.pt", device="cpu")
    snapshot, classes = trainer.snapshot(), trainer.classes
    prediction = model_prediction(snapshot, classes)
    result = evaluate_without_gt(prediction.render_labels_and_depth, list(dataset.test), scale=scale,
                                 min_overlap=min_overlap, class_name=classes.name_of,
                                 is_object=set(classes.thing_ids).__contains__)
    lines = write_report(result, out, {"checkpoint": str(folder / "checkpoint.pt"), "dataset": str(dataset_path),
                                       "labels": labels, "iteration": snapshot.iteration, "scale": scale,
                                       "min_overlap": min_overlap, "through": "nodes"})
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    summary.update(ok=snapshot.iteration > 0, iterations=snapshot.iteration, objects=len(prediction.instance_ids),
                   score=result.summary(), timings=timings, report=lines)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
