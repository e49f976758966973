"""The `clusteringsdf` command line.

Each subcommand lives in a function that imports what it needs, so that
``clusteringsdf --help`` and the light commands start quickly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from clusteringsdf_core import __version__


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from clusteringsdf_core.config import ConfigError

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
