"""The machinery every config section is built on: fields with help and bounds, type
coercion, validation naming the dotted path of a bad value, and building a section
from a (partial) mapping. Sections of the core are in :mod:`.sections`; components
outside the tree (segmenters, baselines, the TSDF) build their own sections with it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import field
from typing import Any, ClassVar, Mapping


class ConfigError(ValueError):
    """A configuration value is unknown, missing, of the wrong type or out of range.

    ``path`` is the dotted name of the offending field (``loss.lambda_diff``).
    """

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | None = None, min_exclusive: bool = False, scene_length: bool = False) -> Any:
    """A config field: default, help text and the constraints checked on construction.

    ``scene_length``: a length in metres that follows the size of the scene (a band, a
    spacing, a gap, as opposed to a sensor's range): :func:`scale_lengths` multiplies it.
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "min_exclusive": min_exclusive,
            "scene_length": scene_length}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


_SCALARS = (bool, int, float, str)


class Section:
    """Base of every config section: type coercion and validation after ``__init__``."""

    name: ClassVar[str] = ""
    #: Fields that older versions had and this one no longer reads: accepted (and
    #: ignored) when reading a saved configuration, so old checkpoints and YAML load.
    retired: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            path = f"{self.name}.{f.name}" if self.name else f.name
            value = _coerce(path, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_bounds(path, value, f.metadata)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks of a section; raise :class:`ConfigError` naming the field."""

    def replace(self, **changes: Any):
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _coerce(path: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(hint) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        return [_coerce(f"{path}[{i}]", v, item_type) for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(path, f"must be finite, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    return value


def _check_bounds(path: str, value: Any, meta: Mapping[str, Any]) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise ConfigError(path, f"must be one of {list(meta['choices'])}, got {v!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and (v < lo or (meta.get("min_exclusive") and v == lo)):
            sign = ">" if meta.get("min_exclusive") else ">="
            raise ConfigError(path, f"must be {sign} {lo}, got {v!r}")
        if hi is not None and v > hi:
            raise ConfigError(path, f"must be <= {hi}, got {v!r}")


def build_section(section_cls: type, values: Any, *, partial: bool = False, base: Any = None):
    """Build one section from a mapping; unknown fields always raise, missing ones
    raise unless ``partial`` (then they come from ``base``, default: the defaults)."""
    name = section_cls.name
    if not isinstance(values, Mapping):
        raise ConfigError(name, f"expected a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(section_cls)}
    values = {k: v for k, v in values.items() if k not in section_cls.retired}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}", "unknown field")
    missing = names - set(values)
    if missing and not partial:
        raise ConfigError(f"{name}.{sorted(missing)[0]}", "missing field")
    base = base if base is not None else section_cls()
    return section_cls(**{**dataclasses.asdict(base), **values})


def scale_lengths(section: Any, factor: float) -> Any:
    """A copy of a section (or of a dataclass of sections, such as the whole tree) with
    every field declared ``scene_length`` multiplied by ``factor``; nested sections are
    scaled too. ``factor`` 1 returns ``section`` itself."""
    if factor == 1.0:
        return section
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"length factor must be a positive number, got {factor!r}")
    changes = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.metadata.get("scene_length"):
            changes[f.name] = value * factor
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = scale_lengths(value, factor)
    return dataclasses.replace(section, **changes) if changes else section


def scene_length_fields(section_cls: type, prefix: str = "") -> list[str]:
    """Dotted names of the ``scene_length`` fields of a section class (nested sections
    included, by their default's class)."""
    names = []
    for f in dataclasses.fields(section_cls):
        if f.metadata.get("scene_length"):
            names.append(prefix + f.name)
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default) and not isinstance(default, type):
                names += scene_length_fields(type(default), f"{prefix}{f.name}.")
    return names
