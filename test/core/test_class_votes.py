"""Machine-class votes on a sparse voxel grid (names the parts of split channels)."""

import json

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


def test_a_class_table_loads_from_yaml_or_json_and_bad_files_name_the_entry(tmp_path):
    from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable, load_class_table

    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  - void\n  - {name: floor, is_thing: false}\n  - mug\n"
                    "  - {id: 3, name: box, thing: true}\n")
    table = load_class_table(path)
    assert [(c.id, c.name, c.is_thing) for c in table.classes] == [
        (0, "void", False), (1, "floor", False), (2, "mug", True), (3, "box", True)]
    assert table.thing_ids == [2, 3] and table.stuff_ids == [1]
    saved = tmp_path / "saved.json"                           # the list a saved map holds
    saved.write_text(json.dumps(SCANNET_REDUCED.to_list()))
    assert load_class_table(saved) == SCANNET_REDUCED != table
    assert ClassTable.from_list(table.to_list()) == table
    for text, match in [("- mug\n- void\n", "entry 0 must be void"),
                        ("- void\n- {name: mug, id: 5}\n", "entry 1: id 5 is not its position"),
                        ("- void\n- mug\n- mug\n", "'mug' appears twice"),
                        ("- void\n- {name: mug, colour: red}\n", "entry 1: unknown key"),
                        ("- void\n- {name: mug, is_thing: maybe}\n", "is_thing must be true or false"),
                        ("classes: 3\n", "expected a list"), ("- [unclosed\n", "not valid")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_class_table(path)
    with pytest.raises(ValueError, match="cannot be read"):
        load_class_table(tmp_path / "missing.yaml")
