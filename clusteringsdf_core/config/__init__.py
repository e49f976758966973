"""The configuration tree: one dataclass per component, validated on construction.

The whole method is data: :class:`Config` holds one section per component
(``model``, ``render``, ``loss``, ``sampling``, ``keyframes``, ``trainer``,
``extract``, ``data``). Every field has a default (the values of the paper and
of the authors' public code, see ``docs/METHOD.md``), a
one-line help text, and optional bounds or choices that are checked when the
section is built. A bad value raises :class:`ConfigError` naming the dotted path
of the field (``loss.lambda_diff``).

The same tree drives the offline command line (YAML files in ``config/``) and the
ROS node (its parameters are the flattened tree: ``loss.lambda_diff``), see
:func:`flatten` and :func:`unflatten`. YAML is written with ``yaml.safe_dump``
of plain dictionaries, never pickled objects, so renaming a class never breaks
a saved file.
"""

from clusteringsdf_core.config.schema import ConfigError, Section, build_section, param
from clusteringsdf_core.config.sections import (SECTIONS, DataConfig, ExtractConfig, KeyframeConfig, LossConfig,
                                               ModelConfig, RenderConfig, SamplingConfig, TrainerConfig)
from clusteringsdf_core.config.tree import Config, field_help, field_metadata, field_specs, flatten, unflatten
from clusteringsdf_core.config.yaml_io import dump_yaml, load_yaml, read_yaml_tree, save_yaml

__all__ = [
    "ConfigError",
    "ModelConfig",
    "RenderConfig",
    "LossConfig",
    "SamplingConfig",
    "KeyframeConfig",
    "TrainerConfig",
    "ExtractConfig",
    "DataConfig",
    "Config",
    "flatten",
    "unflatten",
    "load_yaml",
    "save_yaml",
    "field_help",
    "field_metadata",
    "field_specs",
    "build_section",
    "read_yaml_tree",
    "dump_yaml",
    "param",
    "Section",
    "SECTIONS",
]
