"""The `clusteringsdf` command line.

Each subcommand lives in a function that imports what it needs, so that
``clusteringsdf --help`` and the light commands start quickly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from clusteringsdf_core import __version__


#: Commands served by other packages, named by module so that the core never imports
#: them (nor ROS) unless one of them is asked for: name -> (module, help). The module's
#: ``main(argv)`` gets the whole command line from the command name on.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "bag": ("clusteringsdf_ros.cli", "rosbag2 tools: write a bag from any dataset, summarise a bag "
                                     "(needs the ROS 2 package)"),
    "ros": ("clusteringsdf_ros.cli", "run the ROS launch files without launch_ros; the ROS demo; a "
                                     "recording through the nodes (needs the ROS 2 package)"),
}


def _run_plugin(name: str, argv: Sequence[str]) -> int:
    import importlib

    module_name = PLUGIN_COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"clusteringsdf {name}: needs the ROS 2 package ({module_name} is not importable: {exc}). "
              "Build it with `make setup` (or colcon) and run through `scripts/env.sh` or after "
              "`source install/setup.bash`.", file=sys.stderr)
        return 2
    return int(module.main([name, *argv]) or 0)


def _repo_config_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "config"


def _cmd_config(args: argparse.Namespace) -> int:
    from clusteringsdf_core import config as cfg

    if args.action == "show":
        config = cfg.load_yaml(args.file, partial=True) if args.file else cfg.Config()
        sys.stdout.write(cfg.dump_yaml(config.to_dict()))
    elif args.action == "params":
        for path, default, help_text in cfg.field_specs():
            print(f"{path:40s} {default!r:24s} {help_text}")
    elif args.action == "check":
        if not args.file:
            raise SystemExit("clusteringsdf config check: give a YAML file")
        config = cfg.load_yaml(args.file, partial=args.partial)
        print(f"{args.file}: valid ({len(cfg.flatten(config))} parameters)")
    return 0


def _progress(total: int, desc: str):
    """A tqdm bar on a terminal (plain periodic lines when not a TTY)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=None, dynamic_ncols=True)


def _cmd_scene(args: argparse.Namespace) -> int:
    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.synthetic import (SyntheticSceneConfig, generate_scene,
                                                   write_synthetic_scene)
    from clusteringsdf_core.viz import frames_contact_sheet, save_png

    started = time.perf_counter()
    config = SyntheticSceneConfig(
        seed=args.seed, width=args.width, height=args.height, num_train=args.num_train,
        num_test=args.num_test, num_objects=args.num_objects, furniture=args.furniture,
        layout=args.layout, depth_noise=not args.no_depth_noise, scale=args.scale)
    out = Path(args.out)
    with _progress(config.num_train + config.num_test, "rendering") as bar:
        scene = generate_scene(config, progress=lambda done, total: bar.update(1))
    if args.segmenter not in segmenter_sim.preset_names():
        raise SystemExit(f"unknown segmenter preset {args.segmenter!r}; choose from "
                         f"{segmenter_sim.preset_names()}")
    sim = segmenter_sim.preset(args.segmenter)
    train = segmenter_sim.simulate_dataset(scene.dataset.train, sim, seed=args.seed)
    test = segmenter_sim.simulate_dataset(scene.dataset.test, sim, seed=args.seed)
    write_synthetic_scene(scene, out, label_variant="sim", labelled_frames=(train, test))
    sheet = save_png(out / "contact_sheet.png", frames_contact_sheet(train, max_rows=args.sheet_rows))
    elapsed = time.perf_counter() - started
    print(f"scene {scene.dataset.name}: room {scene.room_size[0]:.1f} x {scene.room_size[1]:.1f} x "
          f"{scene.room_size[2]:.1f} m, {len(scene.objects)} objects "
          f"({scene.furniture_source} furniture), {len(train)} train + {len(test)} test frames at "
          f"{config.width}x{config.height}")
    for obj in scene.objects:
        print(f"  object {obj.instance_id:2d}: {scene.dataset.classes.name_of(obj.class_id):14s} "
              f"{obj.model.name}")
    print(f"segmenter simulation: preset {args.segmenter!r} (ids re-drawn per view)")
    print(f"written to {out}/ (scene.json, rgb/, depth/, gt_*/, labels/sim/, meshes/) in {elapsed:.1f} s")
    print(f"contact sheet: {sheet}")
    return 0


def _comma_list(value: str) -> list[str]:
    """``a, b,,c`` -> ["a", "b", "c"] (an argparse type)."""
    return [x.strip() for x in value.split(",") if x.strip()]


def _comma_ints(value: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2] (an argparse type)."""
    return [int(x) for x in _comma_list(value)]


def baseline_list(value: str) -> list[str]:
    """``none`` -> [], else a comma list of the bench's baselines (an argparse type, also
    of ``clusteringsdf ros demo --baselines``)."""
    from clusteringsdf_core.pipeline import check_baselines

    try:
        return check_baselines([] if value.strip().lower() == "none" else _comma_list(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_method_options(items: Sequence[str]) -> dict[str, dict]:
    """``--set METHOD.FIELD[.FIELD]=VALUE`` -> {method: {"config": nested overrides}};
    VALUE is read as YAML (numbers, true/false, lists)."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, path = key.strip().partition(".")
        if not sep or not dot or not path:
            raise SystemExit(f"clusteringsdf bench: --set wants METHOD.FIELD=VALUE, got {item!r}")
        node = out.setdefault(method, {}).setdefault("config", {})
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    from clusteringsdf_core.bench import harness, scenes
    from clusteringsdf_core.bench.protocols import PROTOCOLS
    from clusteringsdf_core.bench.methods import method_names

    if args.list:
        from clusteringsdf_core.bench.methods import methods

        for m in methods():
            print(f"{m.name:16s} {m.description}")
        for name, proto in PROTOCOLS.items():
            print(f"protocol {name:10s} labels {', '.join(proto.variants)}: {proto.description}")
        return 0
    names = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods else method_names()
    unknown = [n for n in names if n not in method_names()]
    if unknown:
        raise SystemExit(f"clusteringsdf bench: unknown method(s) {unknown}; registered: "
                         f"{method_names()}")
    if not args.scene and not args.seeds:
        raise SystemExit("clusteringsdf bench: give --scene DIR ... or --seeds N ...")
    if args.seeds:
        from clusteringsdf_core.data.synthetic import LAYOUTS

        unknown = [v for v in args.layout if v not in LAYOUTS]
        if unknown or not args.layout:
            raise SystemExit(f"clusteringsdf bench: unknown layout(s) {unknown or args.layout}; "
                             f"choose from {list(LAYOUTS)}")
    if args.labels and args.protocol in PROTOCOLS and not PROTOCOLS[args.protocol].own_labels:
        missing = [v for v in args.labels if v not in PROTOCOLS[args.protocol].variants]
        if missing:
            raise SystemExit(f"clusteringsdf bench: protocol {args.protocol!r} has no label "
                             f"variant(s) {missing}; it has "
                             f"{list(PROTOCOLS[args.protocol].variants)}")
    options = _parse_method_options(args.set or [])
    for name in names:
        extra = options.setdefault(name, {})
        if args.time_budget is not None:
            extra["time_budget_s"] = args.time_budget
        if args.eval_at:
            extra["eval_at"] = args.eval_at
        if args.device is not None:
            extra["device"] = args.device
    stray = sorted(set(options) - set(names))
    if stray:
        raise SystemExit(f"clusteringsdf bench: --set names method(s) not run: {stray}")
    if args.protocol == "without_gt":
        from clusteringsdf_core.bench.without_gt import bench_command

        return bench_command(args, names, options)
    out = Path(args.out)
    started = time.perf_counter()
    datasets = []
    if args.scene:
        datasets += scenes.open_scenes(args.scene)
    for layout in (args.layout if args.seeds else []):
        datasets += scenes.synthetic_scenes(
            args.seeds, out / "scenes", width=args.width, height=args.height,
            num_train=args.num_train, num_test=args.num_test, num_objects=args.num_objects,
            furniture=args.furniture, layout=layout, scale=args.scale)
    document = harness.run_protocol(args.protocol, names, datasets, out, seed=args.label_seed,
                                    method_options=options, figure_views=args.figure_views,
                                    fail_fast=args.fail_fast,
                                    geometry_points=args.geometry_points,
                                    label_variants=args.labels)
    outputs = document["outputs"]
    print(f"benchmark '{args.protocol}': {len(names)} method(s) x "
          f"{len(document['protocols'][args.protocol]['variants'])} label variant(s) x "
          f"{len(datasets)} scene(s) x {len(args.label_seed)} label seed(s) in "
          f"{time.perf_counter() - started:.1f} s")
    for key in ("results", "markdown", "figure"):
        if key in outputs:
            print(f"  {key:8s} {outputs[key]}")
    failed = [(v, m, s) for v, block in document["protocols"][args.protocol]["variants"].items()
              for m, me in block["methods"].items() for s, e in me["scenes"].items() if "error" in e]
    if failed:
        print(f"clusteringsdf bench: {len(failed)} run(s) failed; see {outputs['markdown']}",
              file=sys.stderr)
        return 1
    return 0


def _open(path: str, labels: str | None):
    from clusteringsdf_core.data.formats import open_dataset

    return open_dataset(path, labels=labels) if labels else open_dataset(path)


def _cmd_train(args: argparse.Namespace) -> int:
    from clusteringsdf_core import pipeline

    if args.resume and (args.preset is not None or args.config or args.set):
        raise SystemExit("clusteringsdf train --resume: the run goes on with the configuration in its "
                         "checkpoint; --preset, --config and --set do not apply (--iterations does)")
    dataset = _open(args.dataset, args.labels)
    if args.resume:
        try:
            trainer, summary = pipeline.train(dataset, None, args.out, time_budget_s=args.time_budget,
                                              resume=True, iterations=args.iterations)
        except FileNotFoundError as exc:
            raise SystemExit(f"clusteringsdf train --resume: {exc}") from None
    else:
        preset_name = args.preset or "cpu"
        config = pipeline.build_config(preset_name, args.config, args.set)
        if args.iterations is not None:
            config = config.merged({"trainer.iterations": args.iterations})
        print(f"training on {dataset.name}: {len(dataset.train)} frames, mode {config.trainer.mode}, "
              f"preset {preset_name}, device {pipeline.device_name(config)}, {config.trainer.iterations} iterations")
        trainer, summary = pipeline.train(dataset, config, args.out, time_budget_s=args.time_budget)
    print(f"{summary['iterations']} iterations ({summary['iterations'] - summary['resumed_from']} in this run) "
          f"in {summary['seconds']:.0f} s ({summary['iterations_per_s']:.1f} it/s); "
          f"checkpoint: {Path(args.out) / 'checkpoint.pt'}")
    return 0


def _load_snapshot(checkpoint: str):
    from clusteringsdf_core.training import Trainer

    trainer = Trainer.load_checkpoint(checkpoint, device="cpu")
    return trainer.snapshot(), trainer.classes


def _cmd_render(args: argparse.Namespace) -> int:
    from clusteringsdf_core import pipeline

    snapshot, classes = _load_snapshot(args.checkpoint)
    dataset = _open(args.dataset, None)
    frames = list(dataset.test if args.split == "test" else dataset.train)
    with _progress(len(frames), "rendering") as bar:
        written = []
        for frame in frames:
            written += pipeline.render_views(snapshot, [frame], classes, args.out)
            bar.update(1)
    print(f"rendered {len(written)} {args.split} views of iteration {snapshot.iteration} into {args.out}/ "
          f"(instance/, semantic/: uint16 ids; instance_color/, rgb/, depth_color/: pictures)")
    return 0


def _cmd_consistency(args: argparse.Namespace) -> int:
    from clusteringsdf_core.bench.without_gt import evaluate_without_gt, write_report
    from clusteringsdf_core.evaluation import model_prediction

    snapshot, classes = _load_snapshot(args.checkpoint)
    frames = list(_open(args.dataset, args.labels).test)
    if len(frames) < 2:
        raise SystemExit(f"clusteringsdf consistency: {args.dataset} has {len(frames)} held-out views; "
                         "two or more are needed")
    prediction = model_prediction(snapshot, classes)     # objects split into parts, as published
    with _progress(len(frames), "rendering held-out views") as bar:
        try:
            result = evaluate_without_gt(prediction.render_labels_and_depth, frames, scale=args.scale,
                                         min_overlap=args.min_overlap, max_pairs=args.max_pairs,
                                         class_name=classes.name_of, is_object=set(classes.thing_ids).__contains__,
                                         progress=bar.update)
        except ValueError as exc:
            raise SystemExit(f"clusteringsdf consistency: {exc}") from None
    print(write_report(result, args.out, {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset),
                                          "labels": args.labels, "iteration": snapshot.iteration,
                                          "scale": args.scale, "min_overlap": args.min_overlap}))
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    import yaml

    from clusteringsdf_core.config import ConfigError
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_core.segment.backends import make_segmenter
    from clusteringsdf_core.segment.dataset_labels import segment_dataset

    params: dict = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"clusteringsdf segment: --param expects FIELD=VALUE, got {item!r}")
        if key.startswith("classical."):
            params.setdefault("classical", {})[key[len("classical."):]] = yaml.safe_load(value)
        else:
            params[key] = yaml.safe_load(value)
    try:
        backend = make_segmenter(args.backend, **params)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"clusteringsdf segment: {exc}") from None
    dataset = open_dataset(args.dataset)
    variant = args.variant or args.backend
    with _progress(len(dataset.train) + len(dataset.test), f"segmenting ({backend.describe()})") as bar:
        summary = segment_dataset(dataset, args.out, backend, variant=variant,
                                  progress=lambda done, total: bar.update(1))
    print(f"labels/{variant} of {summary.root}: {summary.segmented} frames segmented now "
          f"({summary.frames - summary.segmented} had labels), {summary.segments_mean:.1f} segments per frame, "
          f"{summary.seconds_mean * 1000:.0f} ms per frame in the segmenter; "
          f"open with labels={variant!r} (clusteringsdf train {summary.root} --labels {variant})")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np

    from clusteringsdf_core import pipeline

    snapshot, classes = _load_snapshot(args.checkpoint)
    tracked, path = pipeline.extract(snapshot, classes, args.out, resolution=args.resolution)
    for t in tracked:
        o = t.object
        print(f"  object {t.id:3d}: {classes.object_class_name(o.class_id):14s} box {np.round(o.box_size, 2)} m "
              f"at {np.round(o.centroid, 2)}")
    if tracked:
        pipeline.mesh_picture([(t.object.mesh, t.id) for t in tracked], Path(args.out) / "objects.png",
                              title=f"{len(tracked)} objects, iteration {snapshot.iteration}")
    print(f"{len(tracked)} objects written to {path} and {Path(args.out) / 'meshes'}/")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from clusteringsdf_core import pipeline

    print(f"demo: synthetic scene (seed {args.seed}) -> segmenter simulation -> ClusteringSDF "
          f"({args.preset} preset) -> objects -> metrics; outputs in {args.out}/")
    s = pipeline.demo(args.out, seed=args.seed, preset_name=args.preset, time_budget_s=args.time_budget,
                      iterations=args.iterations,
                      baselines=pipeline.DEMO_BASELINES if args.baselines is None else args.baselines)
    t = s["timings"]
    print(f"\nscene:    {s['scene']} ({s['num_gt_objects']} GT objects), {t['scene_s']:.0f} s")
    print(f"training: {s['iterations']} iterations on {s['device']} in {t['train_s']:.0f} s "
          f"({s['iterations_per_s']:.1f} it/s)")
    print(f"objects:  {s['num_objects']} extracted -> {s['objects']} (meshes in objects/meshes/)")
    print(f"metrics on held-out views (results.json, results.md):\n{s['table']}")
    for line in s["comparison"]:
        print(line)
    print("figures:  " + "\n          ".join(s["figures"]))
    print(f"total {t['total_s']:.0f} s")
    return 0


def _cmd_loss_timing(args: argparse.Namespace) -> int:
    from clusteringsdf_core.bench.loss_timing import time_losses

    rows = time_losses(args.rays, channels=args.channels, labels=args.labels, device=args.device)
    print("| rays | clustering (ms) | pairwise contrastive (ms) | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['rays']} | {r['clustering_s'] * 1e3:.2f} | {r['contrastive_s'] * 1e3:.2f} | {r['ratio']:.1f} |")
    return 0


def _synthetic_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """The options of a synthetic scene that ``scene`` and ``bench`` share."""
    p.add_argument("--width", type=int, default=320, help=prefix + "image width, pixels")
    p.add_argument("--height", type=int, default=240, help=prefix + "image height, pixels")
    p.add_argument("--num-train", type=int, default=80, help=prefix + "training views")
    p.add_argument("--num-test", type=int, default=20, help=prefix + "held-out test views (novel poses)")
    p.add_argument("--num-objects", type=int, default=8, help=prefix + "furniture objects on the floor")
    p.add_argument("--furniture", choices=("auto", "sweethome3d", "procedural"), default="auto",
                   help=prefix + "real Sweet Home 3D models (Debian package sweethome3d-furniture) "
                   "or procedural ones; auto: real ones when installed")
    p.add_argument("--scale", type=float, default=1.0,
                   help=prefix + "every length of the scene (room, furniture, camera walk) times "
                   "this; 0.15 makes a tabletop: objects of 1.5-30 cm seen from 0.1-0.8 m")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusteringsdf",
        description="ClusteringSDF offline tools: configuration, scenes, training, "
                    "evaluation. The ROS 2 nodes are started with `ros2 launch clusteringsdf_ros ...`.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="show, list or check the configuration tree")
    p.add_argument("action", choices=("show", "params", "check"),
                   help="show: the tree as YAML (defaults, or FILE merged on them); "
                        "params: every dotted parameter with its default and help; "
                        "check: validate FILE")
    p.add_argument("file", nargs="?", help="a YAML file (plain tree or ROS 2 parameter file)")
    p.add_argument("--partial", action="store_true",
                   help="with check: allow missing fields (an override file)")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("scene", help="generate a synthetic indoor scene with exact ground truth")
    p.add_argument("--out", required=True, help="output folder (canonical scene layout)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scene)")
    _synthetic_options(p, "")
    p.add_argument("--layout", choices=("apart", "touching"), default="apart",
                   help="apart: objects stand apart and off the walls (geometry separates them); "
                        "touching: furniture side by side against the walls, chairs pushed under a "
                        "table, small objects resting on their supports")
    p.add_argument("--segmenter", default="realistic",
                   help="segmenter simulation preset for labels/sim: realistic (default), gt, or a Table A "
                        "masking level 0%%, 10%%, 30%%, 50%%, 70%%")
    p.add_argument("--no-depth-noise", action="store_true", help="exact depth (no sensor noise)")
    p.add_argument("--sheet-rows", type=int, default=4, help="frames shown in contact_sheet.png")
    p.set_defaults(func=_cmd_scene)

    p = sub.add_parser("train", help="train ClusteringSDF on a dataset folder")
    p.add_argument("dataset", help="a scene folder in any format `open_dataset` reads")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, config.yaml, train.json")
    p.add_argument("--preset", default=None, help="base configuration: paper, cpu (default) or gpu")
    p.add_argument("--config", help="YAML file (may be partial) applied on the preset")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one parameter (repeatable), e.g. --set loss.lambda_diff=10.0")
    p.add_argument("--iterations", type=int, help="training iterations (overrides trainer.iterations); "
                   "with --resume the new total")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds")
    p.add_argument("--labels", help="machine-label variant of a canonical scene (default: sim)")
    p.add_argument("--resume", action="store_true",
                   help="go on from OUT/checkpoint.pt (written every trainer.checkpoint_every iterations and "
                        "at the end) with the configuration it was trained with, up to its trainer.iterations "
                        "or --iterations")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="machine labels for a dataset from a 2D segmenter, as a label "
                       "variant the readers open")
    p.add_argument("dataset", help="a dataset in any format `open_dataset` reads (e.g. a ScanNet .sens)")
    p.add_argument("--out", required=True, help="canonical scene folder to write (or the dataset's own, to "
                   "add a variant); rerun to resume")
    p.add_argument("--backend", default="detector", choices=("detector", "classical", "torchscript", "onnx",
                                                           "onnxruntime"),
                   help="detector (default: COCO boxes + classical segments), classical, torchscript, "
                        "onnx (OpenCV), onnxruntime (ONNX Runtime)")
    p.add_argument("--variant", help="label variant name (default: the backend's)")
    p.add_argument("--param", action="append", default=[], metavar="FIELD=VALUE",
                   help="a backend parameter (repeatable), e.g. score_threshold=0.5, model_path=m.onnx, "
                        "classical.max_side_px=320 (the detector's classical segments)")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("consistency", help="score a trained map on a recording without GT objects: depth "
                       "error and cross-view id consistency on the held-out views, and a picture")
    p.add_argument("checkpoint", help="checkpoint.pt of a run or of a saved map")
    p.add_argument("dataset", help="the recording (any format the readers open), with its label variant for "
                   "the segmenter's own ids (--labels)")
    p.add_argument("--labels", help="label variant whose per-view ids are compared too (e.g. detector, "
                   "written by `clusteringsdf segment`)")
    p.add_argument("--out", required=True, help="folder for without_gt.json and without_gt.png")
    p.add_argument("--scale", type=float, default=0.5, help="render size relative to the images (0.5)")
    p.add_argument("--min-overlap", type=float, default=0.3,
                   help="view pairs compared: those sharing at least this share of a view's pixels (0.3)")
    p.add_argument("--max-pairs", type=int, default=30, help="at most this many pairs, most overlapping first")
    p.set_defaults(func=_cmd_consistency)

    p = sub.add_parser("render", help="render label maps, RGB and depth of a trained model")
    p.add_argument("checkpoint", help="checkpoint.pt of a run")
    p.add_argument("dataset", help="scene folder whose views (poses, intrinsics) are rendered")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("extract", help="extract object meshes and the object list of a trained model")
    p.add_argument("checkpoint", help="checkpoint.pt of a run")
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, help="marching-cubes cells along the longest side")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("demo", help="the main job offline: scene, training, objects, metrics")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--preset", default="cpu", help="training preset (cpu, gpu, paper)")
    p.add_argument("--iterations", type=int, help="training iterations (default: the preset's)")
    p.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    p.add_argument("--baselines", type=baseline_list, default=None, metavar="NAME[,NAME...]|none",
                   help="the bench's baselines scored beside ClusteringSDF (default: naive_fusion,"
                        "felzenszwalb,hdbscan; none: no baselines)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("loss-timing", help="time the clustering loss against a pairwise contrastive "
                                          "loss over the same rays (forward + backward)")
    p.add_argument("--rays", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--labels", type=int, default=12, help="distinct labels in the view")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_loss_timing)

    p = sub.add_parser("bench", help="benchmark methods on scenes with simulated machine labels",
                       description="Run registered methods (baselines now; the trainer and its "
                                   "ablations once registered) on scenes with GT, with machine "
                                   "labels simulated from the GT per protocol, and write "
                                   "results.json, results.md and figure.png.")
    p.add_argument("--methods", default="",
                   help="comma-separated method names (default: every registered one; see --list)")
    p.add_argument("--protocol", choices=("baselines", "table_a", "table_2", "machine", "without_gt"),
                   default="baselines",
                   help="baselines / table_2: realistic simulated labels; table_a: GT labels with "
                        "ids randomised per view and 0/10/30/50/70%% of instances masked; machine: the "
                        "scenes' own machine labels (--labels VARIANT, e.g. from `clusteringsdf segment`); "
                        "without_gt: recordings without GT objects (--scene DIR --labels VARIANT), scored "
                        "by depth error and cross-view id consistency")
    p.add_argument("--scene", nargs="+", metavar="DIR",
                   help="scene folder(s) in any format the readers open (GT maps needed)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="N",
                   help="synthetic scenes of these seeds, generated into OUT/scenes/seed_N/ "
                        "(seed_N_LAYOUT/ for a --layout other than apart, seed_N_sSCALE/ for a "
                        "--scale other than 1; reused when already there)")
    p.add_argument("--out", default="outputs/bench", help="output folder")
    p.add_argument("--label-seed", type=_comma_ints,
                   default=[0], metavar="N[,N...]",
                   help="seed(s) of the label simulation (neural methods: also of training); "
                        "several (e.g. 0,1,2) run every scene once per seed and report means "
                        "and spread")
    _synthetic_options(p, "synthetic scenes: ")
    p.add_argument("--layout", type=_comma_list, default=["apart"], metavar="LAYOUT[,LAYOUT...]",
                   help="synthetic scenes: object layout(s), apart (default) or touching (see "
                        "`clusteringsdf scene --help`); several (apart,touching) run every seed "
                        "in each, as scenes synthetic_seedN and synthetic_seedN_touching")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE",
                   help="override a method's config field (repeatable), e.g. "
                        "felzenszwalb.k=3.0 or naive_fusion.tsdf.voxel_size_m=0.04")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds per scene for methods that train (passed as time_budget_s)")
    p.add_argument("--device", default=None, help="torch device for neural methods (cpu, cuda)")
    p.add_argument("--labels", type=_comma_list,
                   default=None, metavar="VARIANT[,VARIANT...]",
                   help="run only these label variants of the protocol (e.g. --protocol table_a "
                        "--labels 0%%,70%%)")
    p.add_argument("--eval-at", type=_comma_ints, default=None,
                   metavar="IT[,IT...]",
                   help="neural methods: also score the model at these iterations (held-out 2D "
                        "metrics, half resolution; not counted as training time): the "
                        "time-to-quality table of results.md")
    p.add_argument("--figure-views", type=int, default=3, help="test views in figure.png")
    p.add_argument("--geometry-points", type=int, default=200_000,
                   help="surface samples per mesh for Chamfer / F-score")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first method error (default: record it and go on)")
    p.add_argument("--list", action="store_true", help="list methods and protocols, then exit")
    p.set_defaults(func=_cmd_bench)

    for name, (_, text) in PLUGIN_COMMANDS.items():
        # Listed here for --help; main() hands these to their module before parsing.
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from clusteringsdf_core.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PLUGIN_COMMANDS:
        return _run_plugin(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"clusteringsdf: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("clusteringsdf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
