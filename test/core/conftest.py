"""Fixtures shared by the core tests."""

import pytest

from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene


@pytest.fixture(scope="module")
def tiny_dataset():
    """A 48x36 procedural room with three objects, five training views labelled by the
    segmenter simulation without masking (ids re-drawn per view)."""
    scene = generate_scene(SyntheticSceneConfig(seed=1, furniture="procedural", width=48, height=36,
                                                num_train=5, num_test=1, num_objects=3, num_small_objects=0))
    ds = scene.dataset
    ds.train = segmenter_sim.simulate_dataset(ds.train, segmenter_sim.preset("0%"), seed=0)
    return ds
