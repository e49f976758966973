"""Channel classes and label agreement (the confidence of published objects)."""

import numpy as np
import pytest
import torch

from clusteringsdf_core.training.channel_classes import ChannelClassCounts


def _won(channels, c=4):
    """Softmax opacities whose argmax is ``channels``."""
    o = torch.full((len(channels), c), 0.1)
    o[torch.arange(len(channels)), torch.tensor(channels)] = 0.7
    return o


def test_label_agreement_is_the_share_of_won_rays_whose_segment_the_channel_owns():
    counts = ChannelClassCounts(4, 3, torch.device("cpu"))
    # segment 0: channel 1 wins 3 of its 4 rays, channel 2 one; segment 1: channel 2 both;
    # the last ray is unlabelled (keep False) and counts for nobody
    o = _won([1, 1, 1, 2, 2, 2, 3])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    keep = torch.tensor([True] * 6 + [False])
    counts.update_agreement(o, group, 2, keep)
    share = counts.agreement_shares()
    assert share[1] == pytest.approx(1.0)         # all its rays are in the segment it owns
    assert share[2] == pytest.approx(2 / 3)       # one ray in a segment channel 1 owns
    assert share[3] == 0.0 and share[0] == 0.0    # no labelled ray; background
    classes, conf = counts.classes()              # no semantic labels: class unknown, confidence set
    assert classes.tolist() == [0, 0, 0, 0] and np.allclose(conf, share)
    # a view without labelled rays changes nothing (no decay either)
    counts.update_agreement(o, group, 2, torch.zeros(7, dtype=torch.bool))
    assert np.allclose(counts.agreement_shares(), share)


def test_state_round_trip_and_old_checkpoints():
    counts = ChannelClassCounts(4, 3, torch.device("cpu"))
    counts.update_agreement(_won([1, 2]), torch.tensor([0, 0]), 1, torch.tensor([True, True]))
    restored = ChannelClassCounts(4, 3, torch.device("cpu"))
    restored.load(counts.state())
    assert np.allclose(restored.agreement_shares(), counts.agreement_shares())
    old = ChannelClassCounts(4, 3, torch.device("cpu"))
    old.load(torch.ones(4, 3, dtype=torch.float64))     # a checkpoint of the counts alone
    assert old.classes()[0][1] == 1 and np.all(old.agreement_shares() == 0)   # classes kept, no agreement yet


def test_semantic_mode_agrees_where_the_channel_is_the_class():
    counts = ChannelClassCounts(4, 4, torch.device("cpu"), semantic=True)
    counts.update_agreement(_won([1, 1, 2]), torch.tensor([1, 2, 2]), 0, torch.tensor([True, True, True]))
    share = counts.agreement_shares()
    assert share[1] == pytest.approx(0.5) and share[2] == pytest.approx(1.0)
