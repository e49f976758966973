"""The whole tree (:class:`Config`), and its flat names: the ROS node's parameters are
the dotted fields (``loss.lambda_diff``) of the same tree the YAML files hold."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from clusteringsdf_core.config.schema import ConfigError, build_section
from clusteringsdf_core.config.sections import (SECTIONS, DataConfig, ExtractConfig, KeyframeConfig, LossConfig,
                                               ModelConfig, RenderConfig, SamplingConfig, TrainerConfig)


@dataclass(frozen=True)
class Config:
    """The whole tree. ``Config()`` is the paper / public-code configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.loss.lambda_cross_view > 0 and self.sampling.cross_view_views == 0:
            raise ConfigError("sampling.cross_view_views",
                              "must be > 0 when loss.lambda_cross_view > 0")

    # -- conversions -------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dictionary (YAML-safe)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any], *, partial: bool = False,
                  base: "Config | None" = None) -> "Config":
        """Build from a nested dictionary.

        With ``partial=False`` every section and field must be present (a complete
        file); with ``partial=True`` missing values come from ``base`` (default:
        ``Config()``). Unknown keys always raise.
        """
        if not isinstance(tree, Mapping):
            raise ConfigError("", f"expected a mapping of sections, got {type(tree).__name__}")
        unknown = set(tree) - set(SECTIONS)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown section (known: {sorted(SECTIONS)})")
        base = base or cls()
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = tree.get(name)
            if values is None:
                if not partial:
                    raise ConfigError(name, "missing section")
                values = {}
            sections[name] = build_section(section_cls, values, partial=partial,
                                           base=getattr(base, name))
        return cls(**sections)

    def merged(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with a partial nested or dotted dictionary applied on top."""
        tree = overrides
        if any("." in key for key in overrides):
            tree = unflatten(overrides)
        return Config.from_dict(tree, partial=True, base=self)


# --------------------------------------------------------------------------- flat names


def flatten(config: Config) -> dict[str, Any]:
    """Dotted parameter names to values: ``{"loss.lambda_diff": 20.0, ...}``."""
    return {f"{section}.{key}": value
            for section, values in config.to_dict().items() for key, value in values.items()}


def unflatten(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted names back to the nested form that :meth:`Config.from_dict` reads."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, sep, name = key.partition(".")
        if not sep or not name or "." in name:
            raise ConfigError(key, "expected a parameter name of the form section.field")
        tree.setdefault(section, {})[name] = value
    return tree


def field_metadata(path: str) -> dict:
    """Help text and constraints (``help``, ``min``, ``max``, ``min_exclusive``,
    ``choices``) of a dotted field name (ROS parameter descriptors, docs)."""
    section, _, name = path.partition(".")
    if section not in SECTIONS:
        raise ConfigError(path, "unknown section")
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == name:
            return dict(f.metadata)
    raise ConfigError(path, "unknown field")


def field_help(path: str) -> str:
    """Help text of a dotted field name; a scene length says that it is one."""
    meta = field_metadata(path)
    return meta["help"] + (" [scene length: times data.length_scale]" if meta.get("scene_length") else "")


def field_specs() -> list[tuple[str, Any, str]]:
    """(dotted name, default, help) of every field, in tree order."""
    defaults = flatten(Config())
    return [(path, value, field_help(path)) for path, value in defaults.items()]


# --------------------------------------------------------------------------- YAML
