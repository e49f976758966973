"""ROS parameter descriptors from the config schema: description, numeric range,
choices, read-only."""

from __future__ import annotations

import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

__all__ = ["parameter_descriptor", "declare"]

_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def parameter_descriptor(metadata: dict, value: Any, *, read_only: bool = False) -> ParameterDescriptor:
    """The descriptor of a parameter whose field has ``metadata`` (``help``, ``min``,
    ``max``, ``min_exclusive``, ``choices``) and default ``value``. A ``min`` or ``max``
    becomes the range ``ros2 param describe`` shows and rclpy enforces (inclusive: an
    exclusive minimum is still checked by the node's validation); ``choices`` go to
    ``additional_constraints``."""
    descriptor = ParameterDescriptor(description=metadata["help"], read_only=read_only)
    lo, hi = metadata.get("min"), metadata.get("max")
    if (lo is not None or hi is not None) and not isinstance(value, bool):
        if isinstance(value, int):
            descriptor.integer_range = [IntegerRange(
                from_value=_INT64[0] if lo is None else int(math.ceil(lo)),
                to_value=_INT64[1] if hi is None else int(math.floor(hi)), step=0)]
        elif isinstance(value, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=-math.inf if lo is None else float(lo),
                to_value=math.inf if hi is None else float(hi), step=0.0)]
    constraints = []
    if metadata.get("min_exclusive") and lo is not None:
        constraints.append(f"greater than {lo}")
    if metadata.get("choices"):
        constraints.append("one of: " + ", ".join(str(c) for c in metadata["choices"]))
    descriptor.additional_constraints = "; ".join(constraints)
    return descriptor


def declare(node, name: str, value: Any, descriptor: ParameterDescriptor):
    """``node.declare_parameter``; a value outside the descriptor's range (an override at
    launch) raises :class:`ConfigError` naming the parameter, as the config tree's own
    validation does."""
    from rclpy.exceptions import InvalidParameterValueException

    from clusteringsdf_core.config import ConfigError

    try:
        return node.declare_parameter(name, value, descriptor)
    except InvalidParameterValueException as exc:
        raise ConfigError(name, str(exc)) from None
