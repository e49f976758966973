"""Machine-class votes on a sparse voxel grid (names the parts of split channels)."""

import numpy as np
import pytest
import torch

from clusteringsdf_core.training.class_votes import ClassVotes


def test_votes_name_a_region_by_its_majority_class_and_survive_a_round_trip():
    votes = ClassVotes(num_classes=10, voxel_m=0.1, flush_every=3)
    here = torch.tensor([[1.02, -2.03, 0.51]]).repeat(5, 1)
    votes.add(here, torch.tensor([4, 4, 4, 7, 0]))           # class 0 (void) does not vote
    votes.add(torch.tensor([[-3.0, 4.0, 1.0], [float("nan"), 0.0, 0.0]]), torch.tensor([2, 2]))
    assert votes.class_of(np.array([[1.05, -2.01, 0.55]])) == (4, pytest.approx(0.75))
    assert votes.class_of(np.array([[-2.95, 4.05, 1.05], [9.0, 9.0, 9.0]])) == (2, pytest.approx(1.0))
    assert votes.class_of(np.array([[0.5, 0.5, 0.5]])) == (0, 0.0)
    assert len(votes) == 3                                    # (voxel, class) pairs: two voxels
    copy = ClassVotes.from_state_dict(votes.state_dict())
    assert copy.class_of(np.array([[1.05, -2.01, 0.55]])) == votes.class_of(np.array([[1.05, -2.01, 0.55]]))
    with pytest.raises(ValueError, match="voxel_m"):
        ClassVotes(5, voxel_m=0.0)
