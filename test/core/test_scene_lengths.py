"""Lengths that follow the scene's size: the config's scene lengths, the trainer and the
engine that resolve them, the baselines, and the scaled synthetic scenes (#15 item 7)."""

import dataclasses

import numpy as np
import pytest

from clusteringsdf_core.bench import baselines
from clusteringsdf_core.config import Config, ConfigError
from clusteringsdf_core.config.lengths import MIN_LENGTH_SCALE, auto_length_scale, resolve_lengths
from clusteringsdf_core.config.schema import scene_length_fields
from clusteringsdf_core.config.sections import SECTIONS
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.presets import preset

ROOM = np.array([[-3.0, -2.2, 0.0], [3.0, 2.2, 2.7]])
TABLE = np.array([[-0.45, -0.33, 0.0], [0.45, 0.33, 0.4]])   # 0.9 m on its largest side


def _scene_lengths(config: Config) -> dict[str, float]:
    values = {}
    for name, cls in SECTIONS.items():
        for field in scene_length_fields(cls):
            values[f"{name}.{field}"] = getattr(getattr(config, name), field)
    return values


def test_the_declared_scene_lengths_are_the_metre_fields_that_follow_the_scene():
    names = set(_scene_lengths(Config()))
    assert names == {"model.init_seed_spacing_m", "render.depth_guided_band_m", "render.near_m",
                     "render.far_m", "render.bounds_padding_m", "loss.sdf_truncation_m",
                     "loss.label_beta_min_m", "keyframes.min_translation_m", "extract.split_gap_m"}
    # sensor limits are not scene lengths
    assert "data.depth_min_m" not in names and "data.depth_max_m" not in names


def test_rooms_keep_the_lengths_as_written():
    config = preset("cpu")
    resolved, factor = resolve_lengths(config, ROOM)
    assert factor == 1.0
    assert _scene_lengths(resolved) == _scene_lengths(config)
    assert resolved.data.length_scale == 1.0


def test_a_tabletop_scales_every_scene_length_by_its_side():
    config = preset("cpu")
    resolved, factor = resolve_lengths(config, TABLE)
    assert factor == pytest.approx(0.9 / config.data.reference_side_m)
    before, after = _scene_lengths(config), _scene_lengths(resolved)
    for name, value in before.items():
        assert after[name] == pytest.approx(value * factor), name
    assert resolved.data.depth_min_m == config.data.depth_min_m          # the sensor's, unchanged
    # resolving again changes nothing: the resolved tree says "as written"
    again, factor_again = resolve_lengths(resolved, TABLE)
    assert again == resolved and factor_again == 1.0


def test_an_explicit_factor_wins_and_the_derived_one_is_bounded():
    config = Config().merged({"data.length_scale": 0.5})
    resolved, factor = resolve_lengths(config, ROOM)
    assert factor == 0.5 and resolved.model.init_seed_spacing_m == pytest.approx(0.25)
    assert auto_length_scale(np.array([[0, 0, 0], [0.01, 0.01, 0.01]]), 4.0) == MIN_LENGTH_SCALE
    assert auto_length_scale(ROOM * 10, 4.0) == 1.0
    with pytest.raises(ValueError, match="finite"):
        auto_length_scale(np.array([[0, 0, 0], [np.nan, 1, 1]]), 4.0)
    with pytest.raises(ConfigError, match="data.reference_side_m"):
        Config().merged({"data.reference_side_m": 0.0})


def test_the_trainer_resolves_keeps_and_restores_its_lengths(tmp_path):
    from clusteringsdf_core.training import Trainer

    config = preset("cpu").merged({"trainer.device": "cpu", "model.num_channels": 4,
                                   "model.grid_max_resolution": 32, "model.grid_levels": 2})
    trainer = Trainer(config, TABLE)
    factor = trainer.length_scale
    assert factor == pytest.approx(0.225)
    assert trainer.config.loss.sdf_truncation_m == pytest.approx(config.loss.sdf_truncation_m * factor)
    # the box is padded by the scaled padding
    assert np.allclose(trainer.box.bounds_m, TABLE + np.array([[-1], [1]]) * 0.1 * factor)
    # the snapshot carries the factor (observation counts use it); rendered stuff bands follow the scene
    from clusteringsdf_core.evaluation import NeuralLabelRenderer

    snapshot = trainer.snapshot()
    assert snapshot.length_scale == factor
    renderer = NeuralLabelRenderer(snapshot, trainer.classes)
    # the stuff bands are a share of the height between floor and ceiling: 0.15 m of a 2.7 m room
    assert renderer.stuff_band_m == pytest.approx((renderer.ceiling_z - renderer.floor_z) * 0.15 / 2.7)
    path = trainer.save_checkpoint(tmp_path / "checkpoint.pt")
    loaded = Trainer.load_checkpoint(path)
    assert loaded.config == trainer.config and loaded.length_scale == pytest.approx(factor)
    # a live update from the node's unresolved tree is scaled as the model's tree was
    live = config.merged({"loss.sdf_truncation_m": 0.2, "loss.lambda_diff": 7.0})
    loaded.update_live(live)
    assert loaded.config.loss.sdf_truncation_m == pytest.approx(0.2 * factor)
    assert loaded.config.loss.lambda_diff == 7.0


def test_a_checkpoint_from_before_the_field_keeps_its_lengths_as_written(tmp_path):
    from clusteringsdf_core.training import Trainer
    from clusteringsdf_core.training.checkpoint import read_checkpoint, write_checkpoint

    config = preset("cpu").merged({"trainer.device": "cpu", "model.num_channels": 4,
                                   "model.grid_max_resolution": 32, "model.grid_levels": 2,
                                   "data.length_scale": 1.0})
    trainer = Trainer(config, TABLE)
    state = trainer.state_dict()
    del state["config"]["data"]["length_scale"], state["config"]["data"]["reference_side_m"]
    del state["length_scale"]
    write_checkpoint(tmp_path / "old.pt", state, ())
    loaded = Trainer.load_checkpoint(tmp_path / "old.pt", state=read_checkpoint(tmp_path / "old.pt"))
    assert loaded.config.model.init_seed_spacing_m == config.model.init_seed_spacing_m
    assert loaded.length_scale == 1.0


def test_baselines_scale_their_lengths_for_a_small_scene():
    table = dataclasses.make_dataclass("D", ["bounds"])(TABLE)
    room = dataclasses.make_dataclass("D", ["bounds"])(ROOM)
    config = baselines.HDBSCANConfig()
    small = baselines.for_scene(config, table)
    factor = 0.9 / 4.0
    assert small.tsdf.voxel_size_m == pytest.approx(config.tsdf.voxel_size_m * factor)
    assert small.downsample_m == pytest.approx(config.downsample_m * factor)
    assert small.normal_weight == pytest.approx(config.normal_weight * factor)
    assert small.min_cluster_size == config.min_cluster_size       # a count, not a length
    assert small.tsdf.max_depth_m == config.tsdf.max_depth_m       # the sensor's
    assert baselines.for_scene(small, table) == small               # resolved once
    assert baselines.for_scene(config, room) == config.replace(length_scale=1.0)


def test_a_scaled_scene_is_the_same_scene_smaller():
    """Every length times the scale, and the same pictures: the tabletop variant tests
    the method's lengths, nothing else."""
    common = dict(seed=4, furniture="procedural", width=64, height=48, num_train=3, num_test=1,
                  num_objects=3, num_small_objects=1, depth_noise=False, rgb_noise=0.0)
    room = generate_scene(SyntheticSceneConfig(**common))
    table = generate_scene(SyntheticSceneConfig(scale=0.15, **common))
    assert np.allclose(table.dataset.bounds, room.dataset.bounds * 0.15)
    assert table.dataset.name.endswith("_s0.15")
    for a, b in zip(room.dataset.train, table.dataset.train):
        assert np.allclose(b.T_world_cam[:3, 3], a.T_world_cam[:3, 3] * 0.15)
        assert np.array_equal(a.gt_instance, b.gt_instance)
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 1
        assert np.allclose(b.depth_m, a.depth_m * 0.15, atol=1e-4)
    for a, b in zip(room.objects, table.objects):
        assert np.allclose(b.mesh().extents, a.mesh().extents * 0.15)
    with pytest.raises(ValueError, match="scale"):
        SyntheticSceneConfig(scale=0.0)


def test_the_engine_sizes_a_tabletop_map_from_its_first_frames():
    """A stream of a tabletop: the engine resolves the lengths from the first frames'
    bounds, and the normalisation frame is not a 4 m room's."""
    from clusteringsdf_core.online import MappingEngine
    from clusteringsdf_core.online.engine import MIN_FRAME_SIDE_M

    scene = generate_scene(SyntheticSceneConfig(seed=4, furniture="procedural", width=64, height=48,
                                                num_train=5, num_test=1, num_objects=3, scale=0.15))
    config = preset("cpu").merged({"trainer.device": "cpu", "model.num_channels": 4,
                                   "model.grid_max_resolution": 32, "model.grid_levels": 2,
                                   "data.image_width": 64, "data.image_height": 48})
    engine = MappingEngine(config, classes=scene.dataset.classes, bootstrap_frames=5)
    for frame in scene.dataset.train:
        engine.put(frame)
    engine.ingest()
    trainer = engine.trainer
    assert trainer is not None
    side = float((trainer.box.bounds_m[1] - trainer.box.bounds_m[0]).max())
    room_side = float((scene.dataset.bounds[1] - scene.dataset.bounds[0]).max())
    assert side < 1.5 * room_side                      # margins scaled with the lengths too
    factor = trainer.length_scale
    assert 0.05 <= factor < 0.5
    assert trainer.config.model.init_seed_spacing_m == pytest.approx(config.model.init_seed_spacing_m * factor)
    frame_side = 2 * trainer.box.scale
    assert frame_side < MIN_FRAME_SIDE_M / 2           # cells per metre follow the table, not a room
    assert frame_side >= MIN_FRAME_SIDE_M * factor - 1e-9
    # explicit lengths as written: the room's rule comes back
    pinned = MappingEngine(config.merged({"data.length_scale": 1.0}), classes=scene.dataset.classes,
                           bootstrap_frames=5)
    for frame in scene.dataset.train:
        pinned.put(frame)
    pinned.ingest()
    assert pinned.trainer.length_scale == 1.0 and 2 * pinned.trainer.box.scale == pytest.approx(MIN_FRAME_SIDE_M)
