"""The configuration tree: defaults, round trips, validation, YAML files."""

import dataclasses

import pytest
import yaml

from clusteringsdf_core import config as cfg
from clusteringsdf_core.config import Config, ConfigError


def test_defaults_are_the_reference_values():
    c = Config()
    # A few numbers of the paper / public code (docs/METHOD.md).
    assert c.model.num_channels == 50
    assert (c.loss.lambda_diff, c.loss.lambda_onehot, c.loss.lambda_reg) == (20.0, 0.5, 10000.0)
    assert (c.loss.lambda_bg, c.loss.lambda_fg) == (0.2, 0.1)
    assert c.trainer.lr == 5.0e-4 and c.trainer.grid_lr_factor == 20.0
    assert c.trainer.adam_betas == [0.9, 0.99] and c.trainer.adam_eps == 1.0e-15
    assert c.model.beta_init == 0.1 and c.model.beta_min == 1.0e-4
    assert c.sampling.rays_per_batch == 1024
    assert c.keyframes.top_fraction == 0.1
    assert c.extract.resolution == 256


def test_dict_round_trip_is_exact():
    c = Config().merged({"loss.lambda_diff": 3.5, "model.sdf_hidden": [64, 64], "trainer.mode": "semantic"})
    again = Config.from_dict(c.to_dict())
    assert again == c
    assert again.loss.lambda_diff == 3.5 and again.model.sdf_hidden == [64, 64]


def test_flatten_unflatten_round_trip():
    c = Config().merged({"render.sampler": "depth_guided", "keyframes.buffer_size": 17})
    flat = cfg.flatten(c)
    assert flat["render.sampler"] == "depth_guided"
    assert all(key.count(".") == 1 for key in flat)
    assert Config.from_dict(cfg.unflatten(flat)) == c
    # ROS parameter values are scalars or lists of scalars only.
    for value in flat.values():
        assert isinstance(value, (bool, int, float, str, list))


def test_yaml_round_trip(tmp_path):
    c = Config().merged({"trainer.lr": 1.0e-3, "loss.definition": "public_code"})
    path = tmp_path / "c.yaml"
    cfg.save_yaml(c, path)
    assert cfg.load_yaml(path) == c


def test_yaml_floats_keep_a_dot_so_ros_reads_doubles():
    text = cfg.dump_yaml({"a": 1.0, "b": 1.0e-15, "c": 5.0e-4, "d": 2.5})
    values = yaml.safe_load(text)
    assert values == {"a": 1.0, "b": 1.0e-15, "c": 5.0e-4, "d": 2.5}
    assert all(isinstance(v, float) for v in values.values())
    assert "a: 1.0" in text


def test_ints_are_accepted_for_floats_and_coerced():
    c = Config().merged({"loss.lambda_diff": 20})
    assert isinstance(c.loss.lambda_diff, float)


@pytest.mark.parametrize("overrides, path", [
    ({"loss.lambda_diff": -1.0}, "loss.lambda_diff"),
    ({"model.num_channels": 1}, "model.num_channels"),
    ({"model.encoding": "octree"}, "model.encoding"),
    ({"trainer.mode": "panoptic"}, "trainer.mode"),
    ({"trainer.iterations": "many"}, "trainer.iterations"),
    ({"trainer.progress_bar": "yes"}, "trainer.progress_bar"),
    ({"trainer.adam_betas": [0.9]}, "trainer.adam_betas"),
    ({"trainer.adam_betas": [0.9, 1.5]}, "trainer.adam_betas"),
    ({"trainer.device": "tpu"}, "trainer.device"),
    ({"model.sdf_hidden": [64, 0]}, "model.sdf_hidden"),
    ({"render.far_m": 0.01}, "render.far_m"),
    ({"render.num_samples": 0}, "render.num_samples"),
    ({"data.depth_max_m": 0.05}, "data.depth_max_m"),
    ({"model.beta_init": float("nan")}, "model.beta_init"),
    ({"loss.lambda_cross_view": 1.0, "sampling.cross_view_views": 0}, "sampling.cross_view_views"),
    ({"loss.no_such_weight": 1.0}, "loss.no_such_weight"),
    ({"nosection.x": 1}, "nosection"),
])
def test_validation_errors_name_the_field(overrides, path):
    with pytest.raises(ConfigError) as info:
        Config().merged(overrides)
    assert info.value.path == path
    assert str(info.value).startswith(path)


def test_direct_construction_validates_too():
    with pytest.raises(ConfigError, match="loss.lambda_reg"):
        cfg.LossConfig(lambda_reg=-5.0)


def test_complete_files_must_have_every_field(tmp_path):
    tree = Config().to_dict()
    del tree["loss"]["lambda_reg"]
    path = tmp_path / "c.yaml"
    path.write_text(cfg.dump_yaml(tree))
    with pytest.raises(ConfigError) as info:
        cfg.load_yaml(path)
    assert info.value.path == "loss.lambda_reg" and str(path) in str(info.value)
    # the field is named once, and the message says what to do about an old file
    assert str(info.value).count("loss.lambda_reg") == 1 and "predates this field" in str(info.value)
    # ... while an override file may be partial.
    assert cfg.load_yaml(path, partial=True).loss.lambda_reg == 10000.0


def test_every_field_has_help():
    specs = cfg.field_specs()
    assert len(specs) == len(cfg.flatten(Config()))
    for path, _, help_text in specs:
        assert len(help_text) > 10, path


def test_default_yaml_matches_the_tree_exactly(repo_root):
    path = repo_root / "config" / "default.yaml"
    tree = cfg.read_yaml_tree(path)
    assert cfg.load_yaml(path) == Config()  # strict: no missing, no unknown key
    assert set(tree) == {f.name for f in dataclasses.fields(Config)}


def test_every_yaml_in_config_loads_into_the_tree(repo_root):
    files = sorted((repo_root / "config").glob("*.yaml"))
    assert files, "config/ has no YAML files"
    for path in files:
        cfg.load_yaml(path)  # raises on an unknown or missing key


def test_preset_yaml_files_mirror_the_presets(repo_root):
    from clusteringsdf_core.presets import preset, preset_names

    assert Config() == preset("paper")
    for name in preset_names():
        path = repo_root / "config" / f"{name}.yaml"
        if name != "paper":
            assert path.exists(), f"config/{name}.yaml is missing"
            assert cfg.load_yaml(path) == preset(name), f"config/{name}.yaml differs from the preset"


def test_cpu_preset_is_smaller_than_the_paper_setup():
    from clusteringsdf_core.presets import preset

    cpu = preset("cpu")
    assert cpu.model.num_channels < Config().model.num_channels
    assert cpu.render.sampler == "depth_guided" and cpu.loss.eikonal_method == "finite_difference"


def test_retired_fields_of_saved_configurations_still_load():
    """loss.normal / loss.smooth were never read and are gone; YAML and checkpoints that
    still carry them load, and they do not come back as fields."""
    tree = Config().to_dict()
    tree["loss"] = {**tree["loss"], "normal": 0.05, "smooth": 0.005}
    loaded = Config.from_dict(tree)
    assert loaded == Config() and not hasattr(loaded.loss, "normal")
    with pytest.raises(ConfigError, match="loss.normals"):
        Config.from_dict({**tree, "loss": {**tree["loss"], "normals": 1.0}})
