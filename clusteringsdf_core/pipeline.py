"""The offline jobs behind the command line: train, render, extract, and the demo.

Each function does one job and returns what it wrote, so that the CLI stays a thin
argument parser and the demo is these jobs in a row.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from clusteringsdf_core.config import Config, load_yaml, save_yaml
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.extract import ObjectTracker, export_objects, extract_objects
from clusteringsdf_core.training import Snapshot, Trainer

__all__ = ["build_config", "train", "render_views", "extract", "mesh_picture", "demo_scene", "evaluate_against_gt",
           "score_with_baselines", "beats_baselines", "check_baselines", "comparison_lines",
           "results_markdown", "metrics_table", "demo", "DEMO_METRICS",
           "DEMO_BASELINES"]

log = logging.getLogger(__name__)


def build_config(preset_name: str = "cpu", config_file: str | None = None,
                 overrides: Sequence[str] = ()) -> Config:
    """Preset, then a (partial) YAML file, then ``section.field=value`` overrides."""
    import yaml

    from clusteringsdf_core.presets import preset

    config = preset(preset_name)
    if config_file:
        config = load_yaml(config_file, partial=True, base=config)
    if overrides:
        flat = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not of the form section.field=value")
            flat[key.strip()] = yaml.safe_load(value)
        config = config.merged(flat)
    return config


def train(dataset, config: Config | None, out_dir: str | Path, *, time_budget_s: float | None = None,
          progress: bool = True, resume: bool = False, iterations: int | None = None) -> tuple[Trainer, dict]:
    """Train on ``dataset`` and write ``checkpoint.pt``, ``config.yaml`` and ``train.json``
    (the checkpoint also every ``trainer.checkpoint_every`` iterations).

    ``resume``: go on from the run folder's ``checkpoint.pt`` (the last periodic one
    after a crash) with the configuration it was trained with (``config`` must be None);
    ``iterations`` sets a new total (the learning-rate schedule follows it), and
    ``train.json`` keeps the earlier history and seconds."""
    out = Path(out_dir)
    history, seconds_before, trainer = [], 0.0, None
    if resume:
        if config is not None:
            raise ValueError("resume: the run goes on with its own configuration; pass no config")
        trainer, history, seconds_before = _resumed_run(dataset, out, iterations)
        config = trainer.config
    elif iterations is not None:
        config = config.merged({"trainer.iterations": iterations})
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    started = time.perf_counter()
    if trainer is None:
        trainer = Trainer.from_dataset(dataset, config)
    first_iteration = trainer.iteration

    def record(t: Trainer) -> None:
        if t.iteration % config.trainer.log_every == 0:
            history.append({"iteration": t.iteration, "seconds": seconds_before + time.perf_counter() - started,
                            **t.last_losses})
        every = config.trainer.checkpoint_every
        if every and t.iteration % every == 0:
            t.save_checkpoint(out / "checkpoint.pt")
            write_summary(t)      # the history so far goes with the checkpoint a resume starts from

    def write_summary(t: Trainer) -> dict:
        seconds = time.perf_counter() - started
        summary = {"dataset": dataset.name, "iterations": t.iteration, "seconds": seconds_before + seconds,
                   "iterations_per_s": (t.iteration - first_iteration) / max(seconds, 1e-9),
                   "device": str(t.device), "frames": len(t.views), "resumed_from": first_iteration,
                   "final_losses": t.last_losses, "history": history}
        (out / "train.json").write_text(json.dumps(summary, indent=1))
        return summary

    trainer.fit(progress=progress, callback=record, time_budget_s=time_budget_s)
    trainer.save_checkpoint(out / "checkpoint.pt")
    return trainer, write_summary(trainer)


def _resumed_run(dataset, out: Path, iterations: int | None) -> tuple[Trainer, list, float]:
    """The trainer of ``out/checkpoint.pt`` (``iterations``: its new total), with the
    history and seconds of the run's ``train.json``."""
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"nothing to resume: {checkpoint} does not exist")
    trainer = Trainer.load_checkpoint(checkpoint, dataset=dataset)
    if iterations is not None:
        trainer.config = trainer.config.merged({"trainer.iterations": iterations})
    if not (out / "train.json").is_file():
        return trainer, [], 0.0
    earlier = json.loads((out / "train.json").read_text())
    return trainer, earlier.get("history", []), float(earlier.get("seconds", 0.0))


def render_views(snapshot: Snapshot, frames: Sequence[Frame], classes, out_dir: str | Path,
                 *, device: str = "cpu") -> list[Path]:
    """Label maps (raw uint16 PNG and colour) and RGB/depth renderings at the frames' poses."""
    from clusteringsdf_core.data.dataset import write_png16
    from clusteringsdf_core.evaluation import NeuralLabelRenderer
    from clusteringsdf_core.viz import colorize_depth, colorize_labels, save_png

    out = Path(out_dir)
    renderer = NeuralLabelRenderer(snapshot, classes, device=device)
    written = []
    for frame in frames:
        rendered = renderer.render(frame)
        semantic, instance = renderer(frame)
        name = f"{frame.index:06d}.png"
        write_png16(out / "instance" / name, instance)
        write_png16(out / "semantic" / name, semantic)
        save_png(out / "instance_color" / name, colorize_labels(instance))
        save_png(out / "rgb" / name, (np.clip(rendered["rgb"], 0, 1) * 255).astype(np.uint8))
        save_png(out / "depth_color" / name, colorize_depth(rendered["depth"]))
        written.append(out / "instance" / name)
    return written


def extract(snapshot: Snapshot, classes, out_dir: str | Path, *, resolution: int | None = None,
            tracker: ObjectTracker | None = None, device: str = "cpu"):
    """Meshes per object, a scene mesh coloured by object, and ``objects.json``."""
    model = snapshot.model(device)
    objects = extract_objects(model, snapshot.config.extract, snapshot.channel_classes,
                              snapshot.channel_confidence, resolution=resolution,
                              class_votes=snapshot.class_votes)
    tracker = tracker or ObjectTracker.from_config(snapshot.config.extract)
    tracked = tracker.update(objects, stamp=snapshot.stamp, confirm_new=True)
    path = export_objects(tracked, out_dir, classes, mesh_format=snapshot.config.extract.export_format,
                          iteration=snapshot.iteration)
    return tracked, path


def mesh_picture(meshes_with_ids, out_path: str | Path, *, width: int = 800, height: int = 600,
                 bounds: np.ndarray | None = None, title: str = "") -> Path:
    """A shaded picture of object meshes coloured by id, seen from above a room corner."""
    import trimesh

    from clusteringsdf_core.geometry.camera import look_at, world_rays
    from clusteringsdf_core.viz import label_colours, save_png, titled

    meshes = [(m, i) for m, i in meshes_with_ids if len(m.faces)]
    if not meshes:
        raise ValueError("no meshes to draw")
    scene = trimesh.util.concatenate([m for m, _ in meshes])
    face_id = np.concatenate([np.full(len(m.faces), i) for m, i in meshes])
    lo, hi = (bounds if bounds is not None else scene.bounds)
    centre = (lo + hi) / 2
    extent = float(np.linalg.norm(hi - lo))
    eye = centre + np.array([-0.3, -0.42, 0.5]) * extent
    T = look_at(eye, centre)
    f = 0.9 * width
    from clusteringsdf_core.data.frame import Intrinsics

    K = Intrinsics(f, f, width / 2, height / 2, width, height)
    origins, dirs = world_rays(K, T)
    tri, ray, _ = scene.ray.intersects_id(origins, dirs, multiple_hits=False,
                                          return_locations=True)
    image = np.full((height * width, 3), 245, np.float32)
    if len(ray):
        normals = scene.face_normals[tri]
        shade = 0.35 + 0.65 * np.abs((normals * dirs[ray]).sum(1))
        colours = label_colours(face_id[tri]).astype(np.float32)
        image[ray] = colours * shade[:, None]
    picture = np.clip(image, 0, 255).astype(np.uint8).reshape(height, width, 3)
    return save_png(out_path, titled(picture, title) if title else picture)


def device_name(config: Config) -> str:
    from clusteringsdf_core.training import resolve_device

    return str(resolve_device(config.trainer.device))



def demo_scene(scene_dir: str | Path, *, seed: int = 0):
    """The demo's synthetic scene with realistic simulated segmenter labels, generated
    into ``scene_dir`` unless a scene of the same configuration is already there."""
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.dataset import load_scene
    from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene, write_synthetic_scene

    scene_dir = Path(scene_dir)
    scene_config = SyntheticSceneConfig(seed=seed)
    meta_path = scene_dir / "scene.json"
    if not (meta_path.exists() and json.loads(meta_path.read_text()).get("meta", {}).get("config")
            == json.loads(json.dumps(scene_config.__dict__, default=list))):
        scene = generate_scene(scene_config)
        sim = segmenter_sim.preset("realistic")
        write_synthetic_scene(scene, scene_dir, labelled_frames=(
            segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=seed),
            segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=seed)))
    return load_scene(scene_dir, labels="sim")


#: Metrics shown in the demo's table (results.md and the printed summary).
DEMO_METRICS = ("pq_scene", "pq_scene_things", "sq_scene", "rq_scene", "miou", "ea", "ap25_agnostic",
                "ap50_agnostic", "fscore")


def metrics_table(results: dict[str, dict], keys: Sequence[str] = DEMO_METRICS) -> str:
    """A markdown table, one row per method."""
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in results.items():
        cells = [("-" if metrics.get(k) is None else f"{metrics[k]:.1f}") for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The bench's no-network baselines the demo scores beside ClusteringSDF (by default all).
DEMO_BASELINES = ("naive_fusion", "felzenszwalb", "hdbscan")


def check_baselines(names: Sequence[str]) -> list[str]:
    """``names`` as a list when each is a no-network baseline of the bench, once;
    ValueError naming the bench's baselines otherwise."""
    from clusteringsdf_core.bench.methods import methods

    known = [m.name for m in methods() if m.meta.get("kind") == "baseline"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; the bench's baselines are {known}")
    if len(set(names)) != len(names):
        raise ValueError(f"a baseline is listed twice: {list(names)}")
    return list(names)


def beats_baselines(metrics: Mapping, baselines: Mapping[str, Mapping]) -> bool | None:
    """Whether ``metrics``' PQ^scene is above that of every baseline that has one (None
    when no baseline has one, or ``metrics`` has none)."""
    scores = [b["pq_scene"] for b in baselines.values() if b.get("pq_scene") is not None]
    if not scores or metrics.get("pq_scene") is None:
        return None
    return bool(metrics["pq_scene"] > max(scores))


def score_with_baselines(dataset, prediction, baselines: Sequence[str] = DEMO_BASELINES, *,
                         report: Callable[[str], None] | None = None) -> dict:
    """``prediction`` and the bench's ``baselines`` scored with the bench's
    ``evaluate_prediction`` on the held-out views of ``dataset``, whose training frames
    carry the segmenter labels the baselines fuse.

    Each baseline runs as the bench runs it: one ``MeshCache`` shared, so the TSDF mesh
    is built once, and ``seconds`` is the method's run time plus the mesh build time
    it reused (as if it ran alone); ``eval_s`` is its scoring time. A baseline that
    cannot run on the scene is recorded as ``skipped``, one that raises as ``error``.
    ``report`` gets a line per baseline. Returns ``metrics`` (of ``prediction``),
    ``baselines`` (name -> metrics and times), ``beats_baselines`` (on PQ^scene) and
    ``predictions`` (baseline name -> ScenePrediction)."""
    from clusteringsdf_core.bench.evaluate import evaluate_prediction
    from clusteringsdf_core.bench.scenes import load_gt_scene
    from clusteringsdf_core.bench.methods import MeshCache, get_method, missing_needs

    names = check_baselines(baselines)
    try:
        gt_scene = load_gt_scene(dataset)
    except ValueError:      # no GT meshes: 2D metrics only
        gt_scene = None
    evaluation = {"gt_scene": gt_scene, "compute_3d": gt_scene is not None, "geometry_cache": {}}
    metrics = evaluate_prediction(dataset, prediction, **evaluation)
    cache = MeshCache(max_entries=2)
    results: dict[str, dict] = {}
    predictions = {}
    for k, name in enumerate(names, 1):
        method = get_method(name)
        missing = missing_needs(method, dataset)
        if missing:
            results[name] = {"skipped": "; ".join(missing)}
        else:
            try:
                t0 = time.perf_counter()
                baseline = method.run(dataset, {"cache": cache})
                wall = time.perf_counter() - t0
                t1 = time.perf_counter()
                scores = evaluate_prediction(dataset, baseline, **evaluation)
            except Exception as exc:    # a failing baseline must not sink the demo's results
                log.exception("baseline %s failed", name)
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                reused = float(baseline.meta.get("reused_s", 0.0))
                results[name] = {**scores, "seconds": wall + reused, "wall_s": wall, "reused_s": reused,
                                 "eval_s": time.perf_counter() - t1}
                predictions[name] = baseline
        if report is not None:
            report(f"baseline {k}/{len(names)} {_baseline_note(name, results[name])}")
    return {"metrics": metrics, "baselines": results, "beats_baselines": beats_baselines(metrics, results),
            "predictions": predictions}


def _baseline_note(name: str, entry: Mapping) -> str:
    if "skipped" in entry:
        return f"{name}: skipped ({entry['skipped']})"
    if "error" in entry:
        return f"{name}: failed ({entry['error']})"
    return (f"{name}: PQ^scene {entry['pq_scene']:.1f} in {entry['seconds']:.1f} s "
            f"(scored in {entry['eval_s']:.1f} s)")


def comparison_lines(metrics: Mapping, baselines: Mapping[str, Mapping]) -> list[str]:
    """Whether ClusteringSDF (``metrics``) beats every baseline on PQ^scene, and the
    baselines' times; no lines without baselines."""
    if not baselines:
        return []
    verdict = beats_baselines(metrics, baselines)
    scored = {n: b for n, b in baselines.items() if b.get("pq_scene") is not None}
    if verdict is None:
        line = "ClusteringSDF beats every baseline on PQ^scene: n/a (no baseline was scored)"
    else:
        best = max(scored, key=lambda n: scored[n]["pq_scene"])
        line = (f"ClusteringSDF beats every baseline on PQ^scene: {'yes' if verdict else 'no'} "
                f"({metrics['pq_scene']:.1f}; best baseline {best} {scored[best]['pq_scene']:.1f})")
    times = [f"{n} {b['seconds']:.1f} s" if "seconds" in b else _baseline_note(n, b)
             for n, b in baselines.items()]
    return [line, "baseline run times (TSDF mesh build included, as if each ran alone): " + ", ".join(times)]


def _keeping(renderer: Callable, keep: set[int]) -> Callable:
    """``renderer`` that remembers its labels of the test frames whose ``index`` is in
    ``keep`` (the figure's views: rendered once for the metrics, drawn from memory)."""
    kept: dict[int, Any] = {}

    def render(frame):
        if frame.index in kept:
            return kept[frame.index]
        labels = renderer(frame)
        if frame.index in keep:
            kept[frame.index] = labels
        return labels

    return render


def evaluate_against_gt(dataset, snapshot: Snapshot, objects: Sequence[tuple], out_dir: str | Path, *,
                        baselines: Sequence[str] = DEMO_BASELINES, device: str = "cpu", figure_views: int = 3,
                        title: str = "ClusteringSDF", render_scale: float = 0.5,
                        report: Callable[[str], None] | None = None) -> dict:
    """Metrics of a trained model and of the bench's ``baselines`` on the held-out views
    of ``dataset`` (:func:`score_with_baselines`, ``report`` a line per baseline), and
    the demo's pictures in ``out_dir``: ``objects.png`` (``objects`` = (mesh, id)
    pairs), ``objects_gt.png`` and ``labels.png`` (per test view: the image, the
    segmenter ids of the nearest training view, each baseline, the model's fused labels,
    ground truth). Returns ``metrics`` ({"clusteringsdf": metrics}), ``baselines`` (name
    -> metrics and seconds), ``beats_baselines``, the table (one row each), the
    comparison lines (:func:`comparison_lines`) and the figure paths.

    The model's label maps are rendered at ``render_scale`` times the test image size and
    upsampled (nearest): at 0.5, four times faster on a CPU, and on the demo scene within
    0.1 PQ^scene of full-resolution rendering (62.9 vs 63.0)."""
    from clusteringsdf_core.evaluation import model_prediction
    from clusteringsdf_core.viz import colorize_labels, contact_sheet, save_png

    out = Path(out_dir)
    gt_meshes, _ = dataset.load_gt_meshes()
    figures = []
    if any(len(m.faces) for m, _ in objects):
        figures.append(mesh_picture(list(objects), out / "objects.png", bounds=dataset.bounds,
                                    title=f"{title} objects ({len(objects)}), iteration {snapshot.iteration}"))
    if gt_meshes:
        figures.append(mesh_picture([(m, i) for i, m in gt_meshes.items()], out / "objects_gt.png",
                                    bounds=dataset.bounds, title=f"ground truth ({len(gt_meshes)} objects)"))
    test_size = (dataset.test[0].width, dataset.test[0].height) if len(dataset.test) else None
    resolution = (None if test_size is None or render_scale == 1.0 else
                  (max(8, round(test_size[0] * render_scale)), max(8, round(test_size[1] * render_scale))))
    prediction = model_prediction(snapshot, dataset.classes, device=device, render_resolution=resolution)
    test, train_frames = list(dataset.test), list(dataset.train)
    shown = test[:: max(1, len(test) // figure_views)][:figure_views]
    prediction.renderer = _keeping(prediction.renderer, {f.index for f in shown})   # scored, then drawn
    scored = score_with_baselines(dataset, prediction, baselines, report=report)

    rows = []
    for frame in shown:
        nearest = min(train_frames, key=lambda f: np.linalg.norm(f.T_world_cam[:3, 3] - frame.T_world_cam[:3, 3]))
        _, fused = prediction.render_labels(frame)
        rows.append([(f"test view {frame.index}", frame.rgb),
                     (f"segmenter ids, train view {nearest.index}", colorize_labels(nearest.instance)),
                     *[(name, colorize_labels(p.render_labels(frame)[1])) for name, p in scored["predictions"].items()],
                     (title, colorize_labels(fused)),
                     ("ground truth", colorize_labels(frame.gt_instance))])
    if rows:
        figures.append(save_png(out / "labels.png", contact_sheet(rows)))
    table = metrics_table({"clusteringsdf": scored["metrics"], **scored["baselines"]})
    return {"metrics": {"clusteringsdf": scored["metrics"]}, "baselines": scored["baselines"],
            "beats_baselines": scored["beats_baselines"], "table": table,
            "comparison": comparison_lines(scored["metrics"], scored["baselines"]),
            "figures": [str(f) for f in figures], "num_gt_objects": len(gt_meshes)}


def results_markdown(report: Mapping) -> str:
    """results.md of a demo: the table of :func:`evaluate_against_gt`'s ``report`` and
    its comparison lines."""
    return "\n\n".join([report["table"], *report["comparison"]]) + "\n"


def demo(out_dir: str | Path, *, seed: int = 0, preset_name: str = "cpu", time_budget_s: float | None = None,
         iterations: int | None = None, baselines: Sequence[str] = DEMO_BASELINES, figure_views: int = 3,
         progress: bool = True) -> dict:
    """The main job end to end, offline: a synthetic scene with simulated segmenter
    labels, ClusteringSDF trained on it, objects extracted, and the method and the
    bench's ``baselines`` evaluated against ground truth on held-out views.
    (``clusteringsdf ros demo`` runs the same job through the ROS nodes.)"""
    baselines = check_baselines(baselines)
    out = Path(out_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    scene_dir = out / "scene"
    dataset = demo_scene(scene_dir, seed=seed)
    timings["scene_s"] = time.perf_counter() - started

    config = build_config(preset_name)
    if iterations is not None:
        config = config.merged({"trainer.iterations": iterations})
    trainer, train_summary = train(dataset, config, out / "run", time_budget_s=time_budget_s, progress=progress)
    timings["train_s"] = train_summary["seconds"]
    snapshot = trainer.snapshot()

    t0 = time.perf_counter()
    tracked, objects_path = extract(snapshot, dataset.classes, out / "objects", device=str(trainer.device))
    timings["extract_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = evaluate_against_gt(dataset, snapshot, [(t.object.mesh, t.id) for t in tracked], out,
                                 baselines=baselines, device=str(trainer.device), figure_views=figure_views,
                                 report=print if progress else None)
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started

    summary = {"scene": str(scene_dir), "objects": str(objects_path), "num_objects": len(tracked),
               "num_gt_objects": report["num_gt_objects"], "iterations": trainer.iteration,
               "device": str(trainer.device), "iterations_per_s": train_summary["iterations_per_s"],
               "timings": timings, "metrics": report["metrics"], "baselines": report["baselines"],
               "beats_baselines": report["beats_baselines"], "figures": report["figures"]}
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "results.md").write_text(results_markdown(report))
    summary.update(table=report["table"], comparison=report["comparison"])
    return summary
