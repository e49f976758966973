"""The ROS commands of ``clusteringsdf``: ``bag`` and ``ros``.

``clusteringsdf_core.cli`` hands ``clusteringsdf bag ...`` and ``clusteringsdf ros ...``
to :func:`main` here (by module name, so the core never imports ROS); they need the
colcon-built package on the path (``source install/setup.bash``; ``scripts/env.sh`` in
a checkout).

    clusteringsdf bag from-dataset SCENE OUT [--storage mcap|sqlite3] [--labels L] ...
    clusteringsdf bag info BAG
    clusteringsdf ros run mapping|replay ...     (the launch files without launch_ros)
    clusteringsdf ros demo [--out outputs/demo] [--baselines NAMES|none]  (scene -> bag -> mapping node -> metrics)
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "COMMANDS"]

#: Subcommands this module serves, with the one-line help the core CLI lists.
COMMANDS = {
    "bag": "write a rosbag2 from a dataset (synthetic, ScanNet, Panoptic Lifting, Replica), "
           "or summarise a bag",
    "ros": "run the mapping/replay launch without launch_ros, the ROS demo, or a recording through the nodes",
}


def _bag_parser(sub) -> None:
    p = sub.add_parser("bag", help=COMMANDS["bag"], description=COMMANDS["bag"])
    bag = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    w = bag.add_parser("from-dataset", help="write a rosbag2 folder from any dataset the readers support",
                       description="Rgb, depth, camera_info, segmentation topics, /tf + /tf_static "
                                   "(map -> camera_link -> optical frame) and a PoseStamped topic, "
                                   "with the frames' own timing. Plays with `ros2 bag play` and with "
                                   "the package's bag_player.")
    w.add_argument("dataset", help="scene folder (canonical layout), ScanNet export or .sens, "
                                   "Panoptic Lifting or Replica scene")
    w.add_argument("out", help="bag folder to create (must not exist)")
    w.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    w.add_argument("--labels", default=None,
                   help="which machine labels to write as segmentation/instance (reader-specific; "
                        "canonical scenes: sim, gt, or a labels/ subfolder); default: the reader's")
    w.add_argument("--rate", type=float, default=1.0,
                   help="time scale of the recorded stamps (2.0 = twice as fast as the frames' stamps)")
    w.add_argument("--frame-rate-hz", type=float, default=None,
                   help="space frames evenly at this rate instead of using their stamps")
    w.add_argument("--include-test", action="store_true", help="also write the held-out test frames")
    w.add_argument("--no-labels", action="store_true",
                   help="leave out every segmentation topic (a dataset without 2D labels, e.g. a ScanNet "
                        ".sens: replay it with the segmenter node in the loop, `--use-segmenter`)")
    w.add_argument("--no-depth", action="store_true", help="leave out the depth topic")
    w.add_argument("--no-semantic", action="store_true", help="leave out segmentation/semantic")
    w.add_argument("--no-confidence", action="store_true", help="leave out segmentation/confidence")
    w.add_argument("--no-body-frame", action="store_true",
                   help="TF straight map -> optical frame (no camera_link in between)")
    w.set_defaults(func=_cmd_bag_from_dataset)

    i = bag.add_parser("info", help="topics, types, message counts and duration of a bag")
    i.add_argument("bag", help="rosbag2 folder")
    i.set_defaults(func=_cmd_bag_info)


def _node_run_arguments(p, *, timeout_s: float) -> None:
    """The arguments of a job that replays a bag into the nodes and waits for training."""
    p.add_argument("--config-file", default=None,
                   help="mapping node parameter file (default: the installed config/mapping.yaml)")
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations to wait for (default: trainer.iterations of the config)")
    p.add_argument("--rate", type=float, default=1.0, help="bag playback rate")
    p.add_argument("--timeout", type=float, default=timeout_s,
                   help="give up waiting (and still save and score what was learned) after this many seconds")


def _ros_parser(sub) -> None:
    from clusteringsdf_core.cli import baseline_list
    from clusteringsdf_ros import launch_fallback

    p = sub.add_parser("ros", help=COMMANDS["ros"], description=COMMANDS["ros"])
    ros = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = ros.add_parser("run", help="start a launch file's nodes as processes (no launch_ros needed)",
                       description=launch_fallback.__doc__.split("\n\n")[0])
    launch_fallback.add_launch_arguments(r)
    r.set_defaults(func=_cmd_ros_run)

    d = ros.add_parser("demo", help="synthetic scene -> rosbag -> bag_player -> mapping_node -> "
                                    "objects, pictures and metrics against ground truth")
    d.add_argument("--out", default="outputs/demo", help="output folder (the scene and bag are reused)")
    d.add_argument("--seed", type=int, default=0, help="scene seed")
    _node_run_arguments(d, timeout_s=1800.0)
    d.add_argument("--baselines", type=baseline_list, default=None, metavar="NAME[,NAME...]|none",
                   help="the bench's baselines scored beside the map (default: naive_fusion,"
                        "felzenszwalb,hdbscan; none: no baselines)")
    d.set_defaults(func=_cmd_ros_demo)

    c = ros.add_parser("recording", help="a recording without GT objects (a .sens, a ScanNet export) -> "
                                         "rosbag -> bag_player -> segmenter_node -> mapping_node -> the map "
                                         "scored on its held-out views (depth error, cross-view id consistency)")
    c.add_argument("dataset", help="the recording, in any format the readers open")
    c.add_argument("--out", required=True, help="output folder (the bag is reused while the recording is unchanged)")
    c.add_argument("--labels", default=None,
                   help="label variant of the recording whose per-view ids are scored beside the map's "
                        "(e.g. detector, from `clusteringsdf segment`); the nodes never see it")
    _node_run_arguments(c, timeout_s=3600.0)
    c.set_defaults(func=_cmd_ros_recording)


def _cmd_bag_from_dataset(args: argparse.Namespace) -> int:
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_ros.bags import write_bag_from_dataset

    dataset = open_dataset(args.dataset, labels=args.labels) if args.labels else open_dataset(args.dataset)
    summary = write_bag_from_dataset(
        dataset, args.out, storage=args.storage, include_depth=not args.no_depth,
        include_labels=not args.no_labels, include_semantic=not (args.no_semantic or args.no_labels),
        include_confidence=not (args.no_confidence or args.no_labels),
        include_test=args.include_test, rate=args.rate, frame_rate_hz=args.frame_rate_hz,
        body_frame="" if args.no_body_frame else "camera_link")
    seconds = (summary.end_ns - summary.start_ns) / 1e9
    print(f"wrote {summary.path} ({summary.storage}): {summary.frames} frames over {seconds:.1f} s")
    for topic, count in sorted(summary.messages.items()):
        print(f"  {topic:34s} {count:6d}")
    return 0


def _cmd_bag_info(args: argparse.Namespace) -> int:
    from clusteringsdf_ros.bags import bag_info

    info = bag_info(args.bag)
    print(f"{info['path']}: {info['storage']}, {info['messages']} messages over {info['duration_s']:.2f} s")
    for topic in info["topics"]:
        print(f"  {topic['name']:34s} {topic['type']:32s} {topic['count']:6d}")
    return 0


def _cmd_ros_run(args: argparse.Namespace) -> int:
    from clusteringsdf_ros import launch_fallback

    return launch_fallback.run_from_args(args)


def _cmd_ros_demo(args: argparse.Namespace) -> int:
    from clusteringsdf_ros.demo import print_summary, run_demo

    summary = run_demo(args.out, seed=args.seed, config_file=args.config_file, iterations=args.iterations,
                       rate=args.rate, timeout_s=args.timeout, baselines=args.baselines)
    print_summary(summary)
    return 0 if summary.get("ok") else 1


def _cmd_ros_recording(args: argparse.Namespace) -> int:
    from clusteringsdf_ros.recording import run_recording

    summary = run_recording(args.dataset, args.out, labels=args.labels, config_file=args.config_file,
                            iterations=args.iterations, rate=args.rate, timeout_s=args.timeout)
    status = summary.get("status", {})
    segmenter = summary.get("node_status", {}).get("segmenter_node", {})
    print(f"nodes: bag_player + segmenter_node + mapping_node; logs in {summary['logs']}/")
    print(f"       segmenter: {segmenter.get('frames_in', '?')} images in, {segmenter.get('frames_out', '?')} "
          f"segmented, {segmenter.get('dropped_busy', '?')} dropped while busy; mapping node: "
          f"{status.get('sets_received', '?')} frames received, {status.get('frames_buffered', '?')} key frames")
    print(f"map:   {summary['map_folder']} after {summary['iterations']} iterations "
          f"(target {summary['target_iterations']}), {summary['objects']} objects")
    print(summary["report"])
    return 0 if summary["ok"] else 1


def build_parser(prog: str = "clusteringsdf") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _bag_parser(sub)
    _ros_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"clusteringsdf {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clusteringsdf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
