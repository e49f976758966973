"""The tree as YAML: plain files and ROS 2 parameter files read, plain dictionaries
written with ``yaml.safe_dump``-compatible output (never pickled objects), floats kept
as floats so ROS reads them as doubles."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from clusteringsdf_core.config.schema import ConfigError
from clusteringsdf_core.config.tree import Config


def read_yaml_tree(path: str | Path) -> dict[str, Any]:
    """The mapping of sections in a YAML file: a plain tree, or a ROS 2 parameter
    file (``node_name: {ros__parameters: {...}}``) unwrapped."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, Mapping):
        raise ConfigError("", f"{path}: expected a mapping at the top level")
    if len(tree) == 1:
        (only,) = tree.values()
        if isinstance(only, Mapping) and "ros__parameters" in only:
            tree = only["ros__parameters"]
    return dict(tree)


def load_yaml(path: str | Path, *, partial: bool = False, ignore_sections: tuple[str, ...] = ("ros",),
              base: Config | None = None) -> Config:
    """Load a YAML file (a plain tree or a ROS 2 parameter file) into a :class:`Config`.

    Sections named in ``ignore_sections`` (the ROS-only ``ros`` section) are skipped.
    Errors name the file and the dotted field.
    """
    tree = {k: v for k, v in read_yaml_tree(path).items() if k not in ignore_sections}
    try:
        return Config.from_dict(tree, partial=partial, base=base)
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path}){missing_field_hint(exc)}") from None


def missing_field_hint(exc: ConfigError) -> str:
    """What to do about a complete file that lacks a field (it predates the field); '' for
    other errors."""
    if exc.message != "missing field":
        return ""
    return ("; the file predates this field: refresh an installed copy with `make setup` (colcon build), "
            "add it to a file of your own (`clusteringsdf config show` prints every field)")


def save_yaml(config: Config, path: str | Path) -> None:
    """Write the complete tree as plain YAML (floats written so ROS reads them as doubles)."""
    Path(path).write_text(dump_yaml(config.to_dict()))


class _Dumper(yaml.SafeDumper):
    pass


def _float_representer(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    # PyYAML writes 1e-15 without a dot, which YAML 1.1 loaders read back as a
    # string; ROS needs 1.0 (not 1) for double parameters. Always keep a dot.
    if value.is_integer() and abs(value) < 1e16:
        text = f"{value:.1f}"
    else:
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _list_representer(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(float, _float_representer)
_Dumper.add_representer(list, _list_representer)


def dump_yaml(tree: Mapping[str, Any]) -> str:
    """YAML text of a plain nested dictionary, in insertion order."""
    return yaml.dump(dict(tree), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
