"""The mapping node's parameter file: core tree + ROS section, nothing missing or unknown."""

import dataclasses

import pytest

from clusteringsdf_core.config import Config, ConfigError, dump_yaml, flatten
from clusteringsdf_ros.params import RosConfig, flatten_all, load_params_file


def test_mapping_yaml_is_complete_and_strict(repo_root):
    config, ros = load_params_file(repo_root / "config" / "mapping.yaml")
    assert isinstance(config, Config) and isinstance(ros, RosConfig)
    assert ros.objects_topic == "/objects"


def test_flattened_parameters_cover_core_and_ros():
    flat = flatten_all(Config(), RosConfig())
    assert len(flat) == len(flatten(Config())) + len(dataclasses.fields(RosConfig))
    assert flat["loss.lambda_diff"] == 20.0 and flat["ros.map_frame"] == "map"


def test_unknown_ros_field_is_named(tmp_path):
    tree = {"/**": {"ros__parameters": {**Config().to_dict(),
                                        "ros": {**dataclasses.asdict(RosConfig()), "colour_topic": "x"}}}}
    path = tmp_path / "p.yaml"
    path.write_text(dump_yaml(tree))
    with pytest.raises(ConfigError) as info:
        load_params_file(path)
    assert info.value.path == "ros.colour_topic"


def test_bad_ros_choice_is_named():
    with pytest.raises(ConfigError, match="ros.pose_source"):
        RosConfig(pose_source="gps")
