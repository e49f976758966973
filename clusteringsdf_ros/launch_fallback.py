"""Start the launch files' nodes without launch_ros (PyPI installs have no `ros2 launch`).

    python -m clusteringsdf_ros.launch_fallback mapping [--config-file F] [--namespace NS] ...
    python -m clusteringsdf_ros.launch_fallback replay --bag BAG [--rate R] [--loop] ...

The nodes and their ``--ros-args`` come from :mod:`clusteringsdf_ros.launch_spec`, the
description ``launch/*.launch.py`` also use. Each node is a process; SIGINT/SIGTERM are
forwarded as SIGTERM (rclpy nodes then shut down cleanly and the mapping node saves its
map); with ``replay --exit-when-bag-ends`` the mapping node is stopped once the player
has finished the bag.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clusteringsdf_ros.launch_spec import MAPPING_TOPICS, PACKAGE, NodeSpec, mapping_nodes, replay_nodes, ros_args

__all__ = ["command", "run", "main", "add_launch_arguments", "specs_from_args", "run_from_args"]

_MODULES = {"mapping_node": "clusteringsdf_ros.mapping_node", "bag_player": "clusteringsdf_ros.bag_player_node",
            "segmenter_node": "clusteringsdf_ros.segmenter_node"}


def share_file(name: str) -> str:
    """``config/<name>`` of the installed package (AMENT_PREFIX_PATH), else of the checkout."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "share" / PACKAGE / "config" / name
        if prefix and path.is_file():
            return str(path)
    return str(Path(__file__).resolve().parent.parent / "config" / name)


def _share_config() -> str:
    return share_file("mapping.yaml")


def command(spec: NodeSpec) -> list[str]:
    """The process of a node: the installed executable in lib/<package> when found on
    AMENT_PREFIX_PATH, else the node's module run by this interpreter."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        exe = Path(prefix) / "lib" / spec.package / spec.executable
        if prefix and exe.is_file() and os.access(exe, os.X_OK):
            return [sys.executable, str(exe), *ros_args(spec)]
    if spec.executable not in _MODULES:
        raise FileNotFoundError(f"cannot find executable {spec.executable!r} of {spec.package}")
    return [sys.executable, "-m", _MODULES[spec.executable], *ros_args(spec)]


def run(specs: list[NodeSpec], *, exit_with: str | None = None, grace_s: float = 20.0) -> int:
    """Run the nodes until one named ``exit_with`` ends (or all end, or a signal comes)."""
    procs = {spec.name: subprocess.Popen(command(spec)) for spec in specs}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            finished = {n for n, p in procs.items() if p.poll() is not None}
            if finished == set(procs) or (exit_with and exit_with in finished):
                break
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return max((abs(p.returncode or 0) for p in procs.values()), default=0)


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mapping`` and ``replay`` subcommands and their arguments (those of the
    launch files), added to ``parser``; ``clusteringsdf ros run`` uses the same."""
    sub = parser.add_subparsers(dest="launch", required=True, metavar="LAUNCH")
    for name, text in (("mapping", "mapping node (as mapping.launch.py)"),
                       ("replay", "bag player + mapping node (as replay.launch.py)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config-file", default=None, help="parameter file (default: the installed mapping.yaml)")
        p.add_argument("--namespace", default="")
        p.add_argument("--output-dir", default=None, help="where saved maps go (ros.output_dir)")
        p.add_argument("--use-segmenter", action="store_true",
                       help="also start segmenter_node, making the instance ids from the colour (and depth) "
                            "images" + ("" if name == "mapping" else " (the bag's segmentation topics are not "
                                                                     "played)"))
        if name == "mapping":
            p.add_argument("--pose-source", choices=("tf", "pose_topic", "odometry"))
            for key in MAPPING_TOPICS:
                p.add_argument(f"--{key.replace('_', '-')}", dest=key, help=f"remap of {MAPPING_TOPICS[key]}")
        else:
            p.add_argument("--bag", required=True, help="rosbag2 folder (mcap or sqlite3)")
            p.add_argument("--rate", type=float, default=1.0, help="playback rate")
            p.add_argument("--loop", action="store_true", help="play the bag again and again")
            p.add_argument("--start-offset-s", type=float, default=0.0, help="skip this much of the bag")
            p.add_argument("--exit-when-bag-ends", action="store_true",
                           help="stop the mapping node (which saves its map) when the bag ends")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clusteringsdf_ros.launch_fallback",
                                     description=__doc__.split("\n\n")[0])
    add_launch_arguments(parser)
    return parser


def specs_from_args(args: argparse.Namespace) -> list[NodeSpec]:
    config = args.config_file or _share_config()
    if args.launch == "mapping":
        topics = {k: getattr(args, k) for k in MAPPING_TOPICS if getattr(args, k)}
        return mapping_nodes(config, namespace=args.namespace, pose_source=args.pose_source, topics=topics,
                             output_dir=args.output_dir, use_segmenter=args.use_segmenter)
    return replay_nodes(args.bag, config, namespace=args.namespace, rate=args.rate, loop=args.loop,
                        start_offset_s=args.start_offset_s, output_dir=args.output_dir,
                        use_segmenter=args.use_segmenter)


def run_from_args(args: argparse.Namespace) -> int:
    """Run what parsed ``args`` (of :func:`add_launch_arguments`) describe."""
    exit_with = "bag_player" if getattr(args, "exit_when_bag_ends", False) else None
    return run(specs_from_args(args), exit_with=exit_with)


def main(argv: list[str] | None = None) -> int:
    return run_from_args(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


