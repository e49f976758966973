"""Properties of the segmenter simulator (GT -> machine-like, view-inconsistent labels)."""

import numpy as np
import pytest
from scipy import ndimage

from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.data.classes import SCANNET_REDUCED as CLASSES
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.data.segmenter_sim import (
    SegmenterSimConfig,
    preset,
    preset_names,
    realistic_preset,
    simulate_dataset,
    simulate_frame,
    table_a_presets,
)

WALL, FLOOR = CLASSES.id_of("wall"), CLASSES.id_of("floor")
CHAIR, TABLE, LAMP = CLASSES.id_of("chair"), CLASSES.id_of("table"), CLASSES.id_of("lamp")
H, W = 60, 80
# Instances 1+2 touch, 3+4 touch, 5 and 6 are isolated; 7 is a GT instance id on a wall
# pixel region (stuff), which must never become an instance.
OBJECTS = [  # (gt id, class, y0, y1, x0, x1)
    (1, CHAIR, 10, 25, 5, 20), (2, TABLE, 10, 25, 20, 35),
    (3, LAMP, 35, 50, 5, 15), (4, CHAIR, 35, 50, 15, 30),
    (5, TABLE, 8, 20, 50, 62), (6, CHAIR, 35, 52, 50, 70),
]
THINGS = {gid for gid, *_ in OBJECTS}


def scene(shift: int = 0):
    """GT of one view: wall (top), floor (bottom), six thing instances."""
    gt_sem = np.full((H, W), WALL, np.int32)
    gt_sem[40:] = FLOOR
    gt_inst = np.zeros((H, W), np.int32)
    gt_inst[0:4, 70:80] = 7  # a stuff region that carries an instance id
    for gid, cls, y0, y1, x0, x1 in OBJECTS:
        gt_inst[y0:y1, x0 + shift:x1 + shift] = gid
        gt_sem[y0:y1, x0 + shift:x1 + shift] = cls
    return gt_inst, gt_sem


def make_frame(index: int, shift: int = 0) -> Frame:
    gt_inst, gt_sem = scene(shift)
    return Frame(index=index, rgb=np.zeros((H, W, 3), np.uint8), T_world_cam=np.eye(4),
                 intrinsics=Intrinsics.from_fov(W, H, 60.0), gt_instance=gt_inst, gt_semantic=gt_sem)


def thing_mask(gt_inst, gt_sem):
    return (gt_inst > 0) & np.isin(gt_sem, CLASSES.thing_ids)


def id_map(instance, gt_inst):
    """GT id -> set of machine ids covering it."""
    return {g: set(np.unique(instance[gt_inst == g]).tolist()) for g in THINGS}


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_labels_other_seed_other_ids():
    frame = make_frame(3)
    cfg = realistic_preset()
    a = simulate_frame(frame, cfg, seed=7)
    b = simulate_frame(frame, cfg, seed=7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    others = [simulate_frame(frame, cfg, seed=s)[0] for s in range(8, 14)]
    assert any(not np.array_equal(a[0], o) for o in others)


def test_frame_output_does_not_depend_on_processing_order():
    frames = [make_frame(i, shift=i % 3) for i in range(6)]
    cfg = realistic_preset()
    forward = simulate_dataset(frames, cfg, seed=1)
    backward = simulate_dataset(frames[::-1], cfg, seed=1)[::-1]
    alone = simulate_frame(frames[4], cfg, seed=1)
    for f, b in zip(forward, backward):
        assert f.index == b.index
        np.testing.assert_array_equal(f.instance, b.instance)
        np.testing.assert_array_equal(f.semantic, b.semantic)
        np.testing.assert_array_equal(f.confidence, b.confidence)
    np.testing.assert_array_equal(forward[4].instance, alone[0])


def test_input_forms_agree_and_bad_input_is_named():
    frame = make_frame(5)
    cfg = SegmenterSimConfig(mask_ratio=0.3, boundary_noise_px=1)
    ref = simulate_frame(frame, cfg, seed=2)
    as_tuple = simulate_frame((frame.gt_instance, frame.gt_semantic), cfg, seed=2, index=5)
    as_map = simulate_frame({"gt_instance": frame.gt_instance, "gt_semantic": frame.gt_semantic,
                             "index": 5}, cfg, seed=2)
    for other in (as_tuple, as_map):
        for x, y in zip(ref, other):
            np.testing.assert_array_equal(x, y)
    inst, sem, conf = simulate_frame(frame.gt_instance, SegmenterSimConfig(), seed=0)
    assert sem is None and inst.dtype == np.int32 and conf.dtype == np.float32
    with pytest.raises(ValueError, match="gt_instance"):
        simulate_frame(frame.with_labels(gt_instance=None), cfg, seed=0)
    with pytest.raises(ValueError, match="class table"):
        simulate_frame((frame.gt_instance, frame.gt_semantic + 40), cfg, seed=0)


# --------------------------------------------------------------------------- relabelling


@pytest.mark.parametrize("id_mode", ["permutation", "sparse"])
def test_ids_change_across_views_but_partition_is_exact(id_mode):
    cfg = SegmenterSimConfig(id_mode=id_mode)
    gt_inst, gt_sem = scene()
    things = thing_mask(gt_inst, gt_sem)
    mappings = []
    for index in range(30):
        inst, sem, _ = simulate_frame((gt_inst, gt_sem), cfg, seed=0, index=index)
        assert inst.dtype == np.int32
        # Pixels together in GT stay together, apart stay apart; stuff and none stay 0.
        assert np.all(inst[~things] == 0)
        ids = id_map(inst, gt_inst)
        assert all(len(v) == 1 and 0 not in v for v in ids.values())
        mapping = tuple(next(iter(ids[g])) for g in sorted(THINGS))
        assert len(set(mapping)) == len(THINGS)
        if id_mode == "permutation":
            assert sorted(mapping) == list(range(1, len(THINGS) + 1))
        else:
            assert all(1 <= m <= cfg.sparse_id_max for m in mapping)
        np.testing.assert_array_equal(sem, gt_sem)
        mappings.append(mapping)
    assert len(set(mappings)) > 20
    for k in range(len(THINGS)):
        assert len({m[k] for m in mappings}) > 1, "an object kept its id in every view"


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize("key", ["10%", "30%", "50%", "70%"])
def test_mask_ratio_drops_the_expected_share(key):
    cfg = table_a_presets()[key]
    gt_inst, gt_sem = scene()
    dropped = 0
    frames = 150
    for index in range(frames):
        inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=11, index=index)
        for g, ids in id_map(inst, gt_inst).items():
            if ids == {0}:
                dropped += 1
                region = gt_inst == g
                assert np.all(sem[region] == 0) and np.all(conf[region] == 0)
            else:
                assert len(ids) == 1 and 0 not in ids  # kept instances are intact
    share = dropped / (frames * len(THINGS))
    assert abs(share - cfg.mask_ratio) < 0.04, (key, share)


def test_table_a_presets_and_nested_masks():
    presets = table_a_presets()
    assert list(presets) == ["0%", "10%", "30%", "50%", "70%"]
    assert [p.mask_ratio for p in presets.values()] == [0.0, 0.1, 0.3, 0.5, 0.7]
    for p in presets.values():
        assert p.over_segment_prob == p.under_segment_prob == p.semantic_flip_prob == 0.0
        assert p.boundary_noise_px == 0 and p.min_area_px == 0
    gt_inst, gt_sem = scene()
    for index in range(20):
        previous: set = set()
        for p in presets.values():
            inst, _, _ = simulate_frame((gt_inst, gt_sem), p, seed=3, index=index)
            gone = {g for g, ids in id_map(inst, gt_inst).items() if ids == {0}}
            assert previous <= gone
            previous = gone
    assert set(preset_names()) == {*presets, "gt", "realistic"}
    assert preset("gt") == presets["0%"] and preset("realistic") == realistic_preset()
    with pytest.raises(ValueError, match="unknown segmenter preset"):
        preset("90%")


def test_config_is_frozen_and_validated():
    cfg = SegmenterSimConfig()
    with pytest.raises(Exception):
        cfg.mask_ratio = 0.5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="mask_ratio"):
        SegmenterSimConfig(mask_ratio=1.5)
    with pytest.raises(ConfigError, match="id_mode"):
        SegmenterSimConfig(id_mode="dense")
    with pytest.raises(ConfigError, match="confidence_boundary"):
        SegmenterSimConfig(confidence_boundary=0.99, confidence_inside=0.9)


# --------------------------------------------------------------------------- over / under


def test_over_segmentation_splits_inside_objects():
    gt_inst, gt_sem = scene()
    cfg = SegmenterSimConfig(over_segment_prob=1.0)
    for index in range(5):
        inst, sem, _ = simulate_frame((gt_inst, gt_sem), cfg, seed=0, index=index)
        ids = id_map(inst, gt_inst)
        assert all(len(v) == 2 and 0 not in v for v in ids.values())  # every object cut in two
        for m in np.unique(inst[inst > 0]):
            assert len(np.unique(gt_inst[inst == m])) == 1  # a refinement of GT
        np.testing.assert_array_equal(sem, gt_sem)
    some = SegmenterSimConfig(over_segment_prob=0.3)
    counts = [len(np.unique(simulate_frame((gt_inst, gt_sem), some, seed=0, index=i)[0])) - 1
              for i in range(40)]
    assert min(counts) >= len(THINGS) and np.mean(counts) > len(THINGS) + 0.5


def _touch(gt_inst, a, b):
    grown = ndimage.binary_dilation(gt_inst == a, structure=np.ones((3, 3), bool))
    return bool(np.any(grown & (gt_inst == b)))


def test_under_segmentation_merges_only_touching_instances():
    gt_inst, gt_sem = scene()
    cfg = SegmenterSimConfig(under_segment_prob=1.0)
    merges = 0
    for index in range(30):
        inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=4, index=index)
        assert len(np.unique(inst[inst > 0])) < len(THINGS)
        for m in np.unique(inst[inst > 0]):
            covered = np.unique(gt_inst[inst == m]).tolist()
            assert len(covered) <= 2
            if len(covered) == 2:
                merges += 1
                assert _touch(gt_inst, *covered)
                # One class for the merged segment, and a lower confidence.
                assert len(np.unique(sem[inst == m])) == 1
                assert conf[inst == m].max() < cfg.confidence_inside
        for isolated in (5, 6):
            assert len(np.unique(gt_inst[inst == inst[gt_inst == isolated][0]])) == 1
    assert merges >= 30


# --------------------------------------------------------------------------- boundaries, classes


def test_boundary_noise_changes_only_pixels_near_boundaries():
    gt_inst, gt_sem = scene()
    r = 2
    cfg = SegmenterSimConfig(boundary_noise_px=r)
    clean = SegmenterSimConfig()
    key_gt = gt_inst * 100 + gt_sem
    size = 2 * r + 1
    far = ndimage.maximum_filter(key_gt, size=size) == ndimage.minimum_filter(key_gt, size=size)
    changed_total = 0
    for index in range(10):
        inst, sem, _ = simulate_frame((gt_inst, gt_sem), cfg, seed=5, index=index)
        ref_inst, ref_sem, _ = simulate_frame((gt_inst, gt_sem), clean, seed=5, index=index)
        # Same ids (relabelling draws from its own stream); compare label by label.
        changed = (inst != ref_inst) | (sem != ref_sem)
        assert not np.any(changed & far)
        changed_total += int(changed.sum())
    assert changed_total > 100


def test_class_flips_hit_only_things_and_stuff_stays_zero():
    gt_inst, gt_sem = scene()
    things = thing_mask(gt_inst, gt_sem)
    thing_ids = set(CLASSES.thing_ids)
    cfg = SegmenterSimConfig(semantic_flip_prob=1.0)
    for index in range(10):
        inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=6, index=index)
        np.testing.assert_array_equal(sem[~things], gt_sem[~things])
        assert np.all(inst[~things] == 0)
        for g in THINGS:
            region = gt_inst == g
            (new,) = np.unique(sem[region])
            assert new != gt_sem[region][0] and new in thing_ids
    rate = SegmenterSimConfig(semantic_flip_prob=0.2)
    flips = sum(int(simulate_frame((gt_inst, gt_sem), rate, seed=6, index=i)[1][gt_inst == g][0]
                    != gt_sem[gt_inst == g][0]) for i in range(100) for g in THINGS)
    assert abs(flips / (100 * len(THINGS)) - 0.2) < 0.05


def test_realistic_preset_keeps_stuff_away_from_things_uninstanced():
    gt_inst, gt_sem = scene()
    cfg = realistic_preset()
    things = thing_mask(gt_inst, gt_sem)
    near_things = ndimage.binary_dilation(things, iterations=cfg.boundary_noise_px)
    for index in range(10):
        inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=8, index=index)
        stuff = ~near_things & np.isin(gt_sem, CLASSES.stuff_ids)
        assert np.all(inst[stuff] == 0)
        # Stuff semantics move only near stuff/stuff boundaries, never become things.
        assert np.isin(sem[stuff], [0, *CLASSES.stuff_ids]).all()
        assert np.all(inst[gt_inst == 7] == 0)


def test_min_area_drops_small_segments():
    gt_inst, gt_sem = scene()
    gt_inst[2:5, 40:43] = 9  # a 9-pixel object
    gt_sem[2:5, 40:43] = LAMP
    cfg = SegmenterSimConfig(min_area_px=50, over_segment_prob=0.5)
    for index in range(10):
        inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=9, index=index)
        areas = np.bincount(inst.ravel())
        assert np.all(areas[np.unique(inst[inst > 0])] >= 50)
        assert np.all(inst[gt_inst == 9] == 0) and np.all(sem[gt_inst == 9] == 0)


# --------------------------------------------------------------------------- confidence


def test_confidence_is_a_probability_and_lower_near_boundaries():
    gt_inst, gt_sem = scene()
    gt_sem[0:3, 0:10] = 0  # void: unlabelled, zero confidence
    cfg = SegmenterSimConfig()
    inst, sem, conf = simulate_frame((gt_inst, gt_sem), cfg, seed=0)
    assert conf.dtype == np.float32 and conf.shape == (H, W)
    assert conf.min() >= 0.0 and conf.max() <= 1.0
    assert np.all(conf[0:3, 0:10] == 0)
    key = gt_inst * 100 + gt_sem
    edge = ndimage.maximum_filter(key, size=3) != ndimage.minimum_filter(key, size=3)
    far = ndimage.maximum_filter(key, size=9) == ndimage.minimum_filter(key, size=9)
    labelled = gt_sem > 0
    assert conf[edge & labelled].mean() < conf[far & labelled].mean() - 0.2
    np.testing.assert_allclose(conf[far & labelled], cfg.confidence_inside, atol=1e-6)
    flipped = simulate_frame((gt_inst, gt_sem), SegmenterSimConfig(semantic_flip_prob=1.0), seed=0)[2]
    things = thing_mask(gt_inst, gt_sem)
    assert flipped[things & far].max() < conf[things & far].min()


# --------------------------------------------------------------------------- dataset


def test_simulate_dataset_fills_labels_and_keeps_inputs():
    frames = [make_frame(i) for i in range(4)]
    out = simulate_dataset(frames, realistic_preset(), seed=0)
    assert len(out) == 4
    for before, after in zip(frames, out):
        assert before.instance is None and before.semantic is None
        assert after.instance.shape == (H, W) and after.instance.dtype == np.int32
        assert after.semantic.dtype == np.int32 and after.confidence.dtype == np.float32
        assert after.gt_instance is before.gt_instance and after.index == before.index
        after.validate()


def test_realistic_preset_at_training_resolution():
    big = np.kron(scene()[0], np.ones((4, 4), np.int32)), np.kron(scene()[1], np.ones((4, 4), np.int32))
    inst, sem, conf = simulate_frame(big, realistic_preset(), seed=0)
    assert inst.shape == (240, 320) and inst.max() > 0
