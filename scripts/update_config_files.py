#!/usr/bin/env python3
"""Rewrite the YAML files in config/ after the config tree changed.

Each file is read as a partial tree (values it sets that still exist are kept,
fields that no longer exist are dropped and reported), merged onto the defaults,
and written back complete, so that the strict loaders (and the tests that check
that every file has exactly the tree's keys) accept it. Run through scripts/env.sh.
"""

import dataclasses
import sys
from pathlib import Path

from clusteringsdf_core.config import Config, build_section, dump_yaml, read_yaml_tree, SECTIONS
from clusteringsdf_ros.params import RosConfig

ROOT = Path(__file__).resolve().parent.parent


def _known(section_cls, values: dict, where: str) -> dict:
    names = {f.name for f in dataclasses.fields(section_cls)}
    for key in sorted(set(values) - names):
        print(f"  dropped {where}.{key} (no longer in the tree)")
    return {k: v for k, v in values.items() if k in names}


def main() -> int:
    for path in sorted((ROOT / "config").glob("*.yaml")):
        text = path.read_text()
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        header = header.split("\n\n")[0]
        raw = read_yaml_tree(path)
        is_ros_file = "ros__parameters" in text
        tree = {}
        for name, cls in SECTIONS.items():
            tree[name] = dataclasses.asdict(build_section(cls, _known(cls, raw.get(name) or {}, name),
                                                          partial=True))
        config = Config.from_dict(tree)
        out = config.to_dict()
        if is_ros_file:
            ros = build_section(RosConfig, _known(RosConfig, raw.get("ros") or {}, "ros"), partial=True)
            out = {"/**": {"ros__parameters": {**out, "ros": dataclasses.asdict(ros)}}}
        new_text = header + dump_yaml(out)
        if new_text != text:
            path.write_text(new_text)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
