"""The online engine without ROS: a stream of frames in, tracked objects out; and its
helpers (stream poses, bounds from depth, observation counts, label compaction,
mesh decimation)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.frame import Frame, Intrinsics
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.online import (MappingEngine, PoseHistory, ViewSummary, compact_labels,
                                       count_observations, estimate_bounds, labels as online_labels)
from clusteringsdf_core.online import extent
from clusteringsdf_core.online.meshes import decimate_mesh
from clusteringsdf_core.presets import preset

NS = 1_000_000_000


def _pose(x, yaw_deg=0.0):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    T[0, 3] = x
    return T


# --------------------------------------------------------------------------- helpers


def test_pose_history_interpolates_then_nearest_within_slop():
    from scipy.spatial.transform import Rotation

    history = PoseHistory(max_len=10)
    history.add(100_000_000, _pose(0.0, 0.0))
    history.add(200_000_000, _pose(1.0, 20.0))
    T = history.lookup(150_000_000, slop_ns=10_000_000)  # between two poses: interpolated
    assert T[0, 3] == pytest.approx(0.5)
    assert Rotation.from_matrix(T[:3, :3]).as_euler("xyz", degrees=True)[2] == pytest.approx(10.0)
    np.testing.assert_allclose(history.lookup(200_000_000, 0), _pose(1.0, 20.0))  # exact
    np.testing.assert_allclose(history.lookup(205_000_000, 10_000_000), _pose(1.0, 20.0))
    assert history.lookup(215_000_000, 10_000_000) is None      # newer than the slop
    assert history.lookup(85_000_000, 10_000_000) is None       # older than the slop
    far = PoseHistory(max_gap_ns=50_000_000)
    far.add(0, _pose(0.0))
    far.add(NS, _pose(1.0))
    assert far.lookup(NS // 2, 10_000_000) is None  # too far apart to interpolate


def test_bounds_from_depth_expanded_by_margins():
    K = Intrinsics(20.0, 20.0, 10.0, 10.0, 20, 20)
    depth = np.full((20, 20), 2.0, np.float32)
    frame = Frame(0, np.zeros((20, 20, 3), np.uint8), np.eye(4), K, depth_m=depth)
    bounds = estimate_bounds([frame])
    # the camera looks along +z: points at z = 2, x and y within +-1 m
    assert bounds[0, 2] == pytest.approx(0.0 - extent.BOUNDS_MARGIN_Z_M, abs=0.05)
    assert bounds[1, 2] == pytest.approx(2.0 + extent.BOUNDS_MARGIN_Z_M, abs=0.05)
    assert bounds[1, 0] == pytest.approx(1.0 + extent.BOUNDS_MARGIN_XY_M, abs=0.1)
    rgb_only = estimate_bounds([Frame(0, frame.rgb, np.eye(4), K)])
    assert rgb_only[1, 2] == pytest.approx(extent.RGB_ONLY_REACH_M + extent.BOUNDS_MARGIN_Z_M, abs=0.05)


def test_decimation_caps_faces():
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.5)  # 20480 faces
    mesh.apply_translation([1.0, 2.0, 0.4])
    v, f = decimate_mesh(mesh.vertices, mesh.faces, 5000)
    assert 100 < len(f) <= 5000 and f.max() < len(v)
    assert np.abs(np.linalg.norm(v - [1.0, 2.0, 0.4], axis=1) - 0.5).max() < 0.05


def test_observations_count_views_that_see_the_object():
    K = Intrinsics(20.0, 20.0, 10.0, 10.0, 20, 20).K
    looking = ViewSummary(K, np.eye(4), 20, 20, None, 1)      # optical axis +z
    away = np.eye(4)
    away[:3, :3] = np.diag([1.0, -1.0, -1.0])                  # looks along -z
    occluded = ViewSummary(K, np.eye(4), 20, 20, np.full((20, 20), 1.0, np.float32), 1)
    points = np.array([[0.0, 0.0, 3.0], [0.1, 0.1, 3.0]])
    views = [looking, ViewSummary(K, away, 20, 20, None, 1), occluded]
    assert count_observations(points, views) == 1


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.uint8, np.int64, np.uint64])
def test_fast_label_compaction_equals_the_sort_based_one(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 40, (48, 64)), rng.integers(0, 3, (5, 7)),
             np.repeat(np.arange(12), 4).reshape(6, 8) * 7,          # equal sizes: ties by id
             np.zeros((4, 4), np.int64), rng.integers(250, 256, (9, 9))]
    for labels in cases:
        labels = labels.astype(dtype)
        for max_labels in (None, 1, 5, 100):
            fast = compact_labels(labels, max_labels)
            with monkeypatch.context() as m:
                m.setattr(online_labels, "_LABEL_LUT_LIMIT", 0)      # forces np.unique
                slow = compact_labels(labels, max_labels)
            assert fast[1] == slow[1]
            assert fast[0].dtype == slow[0].dtype == np.int32
            np.testing.assert_array_equal(fast[0], slow[0])


# --------------------------------------------------------------------------- the engine

#: A model small enough for a shared 2-core machine.
TINY = {
    "model.num_channels": 6, "model.grid_max_resolution": 32, "model.init_channel_gap": 0.0,
    "render.num_samples_coarse": 16, "render.num_samples": 12, "render.depth_guided_samples": 6,
    "sampling.rays_per_batch": 128, "loss.eikonal_points": 64,
    "data.image_width": 48, "data.image_height": 36,
    "trainer.num_threads": 1, "trainer.device": "cpu",
}


@pytest.fixture(scope="module")
def small_stream():
    scene = generate_scene(SyntheticSceneConfig(furniture="procedural", width=48, height=36,
                                                num_train=6, num_test=1, num_objects=3))
    return segmenter_sim.simulate_dataset(scene.dataset.train, segmenter_sim.preset("0%"), seed=0)


def test_queue_drops_the_oldest_frame_and_counts_it(small_stream):
    engine = MappingEngine(preset("cpu").merged(TINY), queue_size=2)  # not started
    for frame in small_stream[:3]:
        engine.put(frame)
    assert engine.queue_length() == 2 and engine.counters["dropped_queue_full"] == 1
    assert [f.index for f in engine._queue] == [small_stream[1].index, small_stream[2].index]
    with pytest.raises(RuntimeError):
        engine.submit(lambda t: None).result(timeout=1)


def test_the_engine_imports_the_optimizers_lazy_modules_before_frames_come():
    """torch's first optimizer imports torch._dynamo (seconds): the engine does it when
    made, so creating the first model does not stall the trainer thread while the queue
    overflows (the demo bag lost 20-44 of 80 frames). A fresh interpreter, since this
    one may have imported it already."""
    script = ("import sys\n"
              "from clusteringsdf_core.online import MappingEngine\n"
              "from clusteringsdf_core.presets import preset\n"
              "assert 'torch._dynamo' not in sys.modules\n"
              "MappingEngine(preset('cpu'))\n"
              "assert 'torch._dynamo' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_threads_the_model_waits_for_the_bootstrap_frames(small_stream):
    engine = MappingEngine(preset("cpu").merged(TINY), bootstrap_frames=3)
    engine.put(small_stream[0])
    assert engine.ingest() == 1 and not engine.has_model
    assert engine.train(5) == {}                      # nothing to train yet
    with pytest.raises(RuntimeError, match="1 of 3"):
        engine.extract()
    for frame in small_stream[1:3]:
        engine.put(frame)
    engine.ingest()
    assert engine.has_model and len(engine.trainer.views) == 3
    losses = engine.train(2)
    assert engine.trainer.iteration == 2 and np.isfinite(losses["total"])
    assert engine.stats()["iteration"] == 2


def test_pending_sets_wait_for_their_pose_then_expire_or_overflow():
    from clusteringsdf_core.online.poses import PendingSets

    poses = PoseHistory()
    pending = PendingSets(poses, slop_ns=10_000_000, max_waiting=2, wait_s=1.0)
    pending.add(100_000_000, "a", arrived_s=0.0)
    assert pending.resolve(now_s=0.5) == [] and len(pending) == 1       # no pose yet: waits
    poses.add(150_000_000, _pose(1.0))
    [(stamp, item, T)] = pending.resolve(now_s=0.5)                      # a pose at/after it
    assert (stamp, item) == (100_000_000, "a") and T is None             # ... but 50 ms away
    pending.add(200_000_000, "b", arrived_s=0.0)
    assert pending.resolve(expire=True, now_s=0.5) == []                 # not waited out yet
    [(_, item, T)] = pending.resolve(expire=True, now_s=2.0)             # waited out: goes,
    assert item == "b" and T is None                                     # no pose within slop
    for k, stamp in enumerate((300_000_000, 310_000_000, 320_000_000)):
        pending.add(stamp, k, arrived_s=5.0)
    [(_, item, _)] = pending.resolve(now_s=5.0)                          # beyond max_waiting:
    assert item == 0 and len(pending) == 2                               # the oldest is out
    poses.add(315_000_000, _pose(2.0))
    assert [(i, T is not None) for _, i, T in pending.resolve(now_s=5.0)] == [(1, True)]
    assert pending.clear() == 1 and len(pending) == 0


@pytest.mark.parametrize("schedule", ["rewind", "fixed"])
def test_new_key_frames_rewind_the_schedule_by_their_share(small_stream, schedule):
    config = preset("cpu").merged({**TINY, "trainer.iterations": 100, "trainer.online_schedule": schedule})
    engine = MappingEngine(config, bootstrap_frames=2)
    for frame in small_stream[:2]:
        engine.put(frame)
    engine.ingest()
    engine.train(30)
    trainer = engine.trainer
    assert trainer.schedule_iteration == 30 and trainer.progress == pytest.approx(0.3)
    engine.put(small_stream[2])
    engine.ingest()
    # The third view has had no training: the mean progress of the three is 2/3 of 0.3.
    expected = 20.0 if schedule == "rewind" else 30.0
    assert trainer.schedule_iteration == pytest.approx(expected) and trainer.iteration == 30
    factor = config.trainer.lr_final_factor ** (expected / 100)
    assert trainer.lr_factor == pytest.approx(factor)
    # Late-starting loss terms count plain iterations (L_onehot from 0.67: not yet).
    assert not trainer.past(0.67) and trainer.past(0.3)


def test_snapshots_carry_the_heights_of_the_observed_surfaces(small_stream, tmp_path):
    from clusteringsdf_core.training import Trainer

    engine = MappingEngine(preset("cpu").merged(TINY), bootstrap_frames=3)
    for frame in small_stream[:3]:
        engine.put(frame)
    engine.ingest()
    heights = engine.trainer.snapshot().surface_heights
    z = np.concatenate([_world_heights(f) for f in small_stream[:3]])
    assert heights[0] == pytest.approx(np.percentile(z, 0.5), abs=0.1)     # the floor, about 0
    assert heights[1] == pytest.approx(np.percentile(z, 99.5), abs=0.1)
    assert abs(heights[0]) < 0.1
    engine.trainer.save_checkpoint(tmp_path / "c.pt")
    restored = Trainer.load_checkpoint(tmp_path / "c.pt")            # its key frames come along
    assert restored.snapshot().surface_heights == pytest.approx(heights)
    restored.views = []                                              # without views: the saved ones
    assert restored.snapshot().surface_heights == pytest.approx(heights)


def _world_heights(frame):
    v, u = np.nonzero(frame.depth_m > 0)
    K, d = frame.intrinsics, frame.depth_m[v, u]
    cam = np.stack([(u + 0.5 - K.cx) / K.fx * d, (v + 0.5 - K.cy) / K.fy * d, d], 1)
    return (cam @ frame.T_world_cam[:3, :3].T + frame.T_world_cam[:3, 3])[:, 2]


def _box_object(channel: int, centre):
    import trimesh

    from clusteringsdf_core.extract.objects import ExtractedObject

    mesh = trimesh.creation.box(extents=(0.4, 0.4, 0.4))
    mesh.apply_translation(centre)
    pose = np.eye(4)
    pose[:3, 3] = centre
    return ExtractedObject(channel, mesh, 3, 0.8, np.asarray(centre, float), pose, np.full(3, 0.4), 0.064)


def test_autosaves_keep_two_and_a_loaded_map_goes_on_where_it_was(small_stream, tmp_path):
    import time

    from clusteringsdf_core.online.persistence import AUTOSAVE_PREFIX

    config = preset("cpu").merged(TINY)
    engine = MappingEngine(config, bootstrap_frames=3, autosave_dir=tmp_path / "autosave",
                           autosave_period_s=1e-3)
    for frame in small_stream[:3]:
        engine.put(frame)
    engine.ingest()
    engine.tracker.update([_box_object(1, (1.0, 1.0, 0.2)), _box_object(2, (2.0, 1.0, 0.2))], 0.0,
                          confirm_new=True)                         # ids 1 and 2
    for _ in range(3):                                              # three autosaves, one at a time
        time.sleep(2e-3)
        engine.train(1)
        engine._autosaver.join()
    assert engine.counters["autosaves"] == 3 and engine.stats()["autosave"]["iteration"] == 3
    [run] = (tmp_path / "autosave").iterdir()
    assert len(list(run.glob(f"{AUTOSAVE_PREFIX}*.pt"))) == 2      # the newest two
    assert len(list((run / "keyframes").glob("*.pt"))) == 3

    restarted = MappingEngine(config)
    summary = restarted.load_map(tmp_path / "autosave")             # the newest autosave of any run
    assert summary["iteration"] == 3 and summary["views"] == 3 and summary["objects"] == [1, 2]
    assert [t.id for t in restarted.latest_result.objects] == [1, 2]  # published at once
    assert restarted.stats()["state"] == "training"
    # the same next step as the engine that saved it, and ids go on after the saved ones
    assert restarted.train(1) == engine.train(1)
    [new] = [t for t in restarted.tracker.update([_box_object(3, (3.0, 2.0, 0.2))], 1.0, confirm_new=True)
             if t.id not in (1, 2)]
    assert new.id == 3
    # a map that cannot be read changes nothing
    with pytest.raises(FileNotFoundError, match="no map"):
        restarted.load_map(tmp_path / "nothing_here")
    assert restarted.trainer.iteration == 4


def test_a_saved_map_loads_with_its_key_frames(small_stream, tmp_path):
    config = preset("cpu").merged({**TINY, "extract.resolution": 24, "extract.live_resolution": 24})
    engine = MappingEngine(config, bootstrap_frames=3)
    for frame in small_stream[:3]:
        engine.put(frame)
    engine.ingest()
    engine.train(2)
    engine.save(tmp_path / "map")
    other = MappingEngine(config)
    summary = other.load_map(tmp_path / "map")
    assert summary["path"].endswith("checkpoint.pt") and summary["views"] == 3
    assert other.train(1) == engine.train(1)
    # a map of another class table is refused, and the engine keeps its own model
    from clusteringsdf_core.data.classes import ClassTable, SemanticClass

    table = ClassTable([SemanticClass(0, "void", False), SemanticClass(1, "mug", True)])
    elsewhere = MappingEngine(config, classes=table)
    with pytest.raises(ValueError, match="another class table"):
        elsewhere.load_map(tmp_path / "map")
    assert not elsewhere.has_model


@pytest.mark.parametrize("own, during", [(4, 2), (2, 1), (1, 1), (3, 2)])
def test_the_trainer_hands_half_its_threads_to_a_running_extraction(own, during):
    """The trainer's torch threads (per thread) drop while an extraction runs and come
    back after it; the extractor's half plus the trainer's never exceed its own count."""
    import threading
    import types

    import torch

    from clusteringsdf_core.online.threads import ThreadShare

    trainer = types.SimpleNamespace(config=preset("cpu").merged({**TINY, "trainer.num_threads": own}))
    share = ThreadShare()
    seen = {}

    def run():                            # torch's thread count is per thread: not pytest's
        share.trainer(trainer, extracting=True)
        seen["during"] = torch.get_num_threads()
        share.trainer(trainer, extracting=False)
        seen["after"] = torch.get_num_threads()
        share.extractor(trainer)
        seen["extractor"] = torch.get_num_threads()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == {"during": during, "after": own, "extractor": max(1, own // 2)}
    assert seen["during"] + seen["extractor"] <= max(own, 2)


def test_the_trainer_thread_steps_without_errors(small_stream):
    import time

    engine = MappingEngine(preset("cpu").merged(TINY), bootstrap_frames=2, extract_period_s=0.0)
    engine.start()
    try:
        for frame in small_stream[:3]:
            engine.put(frame)
        deadline = time.monotonic() + 120
        # paced by the trainer thread: a command runs between two steps
        while (engine.submit(lambda t: 0 if t is None else t.iteration).result(timeout=120) < 5
               and not engine.counters["trainer_errors"] and time.monotonic() < deadline):
            pass
    finally:
        engine.stop()
    assert engine.counters["trainer_errors"] == 0
    assert engine.stats()["iteration"] >= 5
