"""A small room streamed frame by frame through the online engine (no ROS): its objects
end in distinct channels and keep their ids between extractions."""

from __future__ import annotations

import numpy as np

from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.online import MappingEngine
from clusteringsdf_core.presets import preset


ITERATIONS = 1000          # in all
PER_FRAME = 25             # after each of the 20 frames: half the budget while they stream
EXTRACT_EVERY = 100


def test_a_streamed_room_gets_one_stable_id_per_object():
    # The small room of the separation test (three pieces of furniture, ids renumbered in
    # every view), streamed frame by frame: 25 iterations after each of its 20 frames
    # (half the budget, as the bench's online method), then training to 1000 in all, with
    # a periodic extraction every 100 iterations. At 400 iterations in all (10 per frame)
    # the objects had not settled: on trainer seeds 0-4 the last extraction split the
    # chair between two channels, lost it, or cut a piece off the sofa (0 of 5 seeds
    # passed on the machine of 2026-12-04; seed 0 had passed on an earlier one, by float
    # rounding). At 1000 seeds 0-3 all pass, with the same three objects and ids over
    # the last four extractions.
    import dataclasses

    from clusteringsdf_core.evaluation import NeuralLabelRenderer

    scene = generate_scene(SyntheticSceneConfig(
        seed=0, room_width_range=(4.0, 4.5), room_depth_range=(3.5, 4.0), num_objects=3,
        num_small_objects=0, furniture="procedural", width=80, height=60, num_train=20, num_test=0,
        depth_noise=False))
    frames = segmenter_sim.simulate_dataset(scene.dataset.train, segmenter_sim.preset("gt"), seed=0)
    config = preset("cpu").merged({
        "model": {"num_channels": 6, "grid_levels": 3, "grid_max_resolution": 64,
                  "init_seeds_observed": 1.0},
        "sampling": {"rays_per_batch": 512},
        "loss": {"eikonal_points": 256, "reg_reference_channels": 50},
        "data": {"image_width": 80, "image_height": 60},
        "trainer": {"iterations": ITERATIONS, "progress_bar": False, "device": "cpu", "seed": 0, "num_threads": 1},
        "extract": {"resolution": 48, "live_resolution": 48, "min_object_faces": 50},
    })
    engine = MappingEngine(config, classes=scene.dataset.classes)
    results = []
    for frame in frames:
        engine.put(frame)
        engine.ingest()
        before = engine.trainer.iteration if engine.has_model else 0
        engine.train(PER_FRAME)
        if engine.has_model and engine.trainer.iteration // EXTRACT_EVERY > before // EXTRACT_EVERY:
            results.append(engine.extract())
    assert engine.has_model and len(engine.trainer.views) == len(frames)
    while engine.trainer.iteration < ITERATIONS:
        engine.train(EXTRACT_EVERY - engine.trainer.iteration % EXTRACT_EVERY)
        results.append(engine.extract())
    ids = [tuple(t.id for t in r.objects) for r in results]
    assert len(ids[-1]) == 3, f"objects published per extraction: {ids}"
    assert ids[-1] == ids[-2], f"ids changed between the last two extractions: {ids}"
    # Each GT object's pixels are dominated by one channel, and each published object is
    # one of those channels.
    dataset = dataclasses.replace(scene.dataset, train=frames)
    renderer = NeuralLabelRenderer(engine.trainer.snapshot(), dataset.classes)
    owners = set()
    for obj in (1, 2, 3):
        votes: dict[int, int] = {}
        for frame in list(dataset.train)[::4]:
            _, channel = renderer(frame)
            ids_, counts = np.unique(channel[frame.gt_instance == obj], return_counts=True)
            for k, n in zip(ids_.tolist(), counts.tolist()):
                votes[k] = votes.get(k, 0) + n
        owners.add(max(votes, key=votes.get))
    assert 0 not in owners and len(owners) == 3, f"channels of the GT objects: {owners}"
    assert {t.object.channel for t in results[-1].objects} == owners


