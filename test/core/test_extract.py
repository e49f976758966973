"""Extraction: meshes per channel from the SDF, boxes, volumes, stable ids."""

import numpy as np
import pytest
import torch
import trimesh

from clusteringsdf_core.extract import (ExtractedObject, ObjectTracker, box_iou_3d, export_objects,
                                        extract_objects, oriented_box_upright)
from clusteringsdf_core.data.classes import SCANNET_REDUCED
from clusteringsdf_core.model.fields import SceneBox
from clusteringsdf_core.model.scene_model import ClusteringSDFModel
from clusteringsdf_core.presets import preset


def test_untrained_model_extracts_its_initial_spheres():
    """With geometric init, channel k is a sphere of radius r (normalised units): the
    extracted meshes must be those spheres, in metres, in the world frame."""
    config = preset("cpu").merged({"model.sdf_parametrization": "direct", "model.num_channels": 4,
                                   "model.init_object_radius": 0.2, "extract.min_object_faces": 10})
    box = SceneBox(np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.5]]), padding_m=0.0)
    model = ClusteringSDFModel(config, box)
    objects = extract_objects(model, config.extract, np.array([0, 6, 8, 7]), np.ones(4), resolution=96)
    assert [o.channel for o in objects] == [1, 2, 3]
    radius_m = 0.2 * box.scale
    for o in objects:
        centre = box.to_world(model.sdf_net.sphere_centres[o.channel].numpy())
        assert np.allclose(o.centroid, centre, atol=0.03)
        assert o.volume == pytest.approx(4 / 3 * np.pi * radius_m ** 3, rel=0.08)
        assert np.allclose(o.box_size, 2 * radius_m, atol=0.05)
        assert o.class_id == [0, 6, 8, 7][o.channel]
        dist = np.linalg.norm(o.mesh.vertices - centre, axis=1)
        assert np.allclose(dist, radius_m, atol=0.03)
        assert (np.einsum("ij,ij->i", o.mesh.vertex_normals, o.mesh.vertices - centre) > 0).mean() > 0.95


def test_touching_objects_get_closed_meshes_split_at_their_contact():
    """Two equal spheres (direct SDFs) that overlap: each object's solid is its sphere
    on its side of the bisector plane. Its shell is open where the other sphere
    covers it; the closed mesh adds the contact disc, is watertight, and its volume is
    the sphere's minus half the lens of the overlap."""
    config = preset("cpu").merged({"model.sdf_parametrization": "direct", "model.num_channels": 3,
                                   "model.init_object_radius": 0.2, "extract.min_object_faces": 10})
    box = SceneBox(np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.5]]), padding_m=0.0)
    model = ClusteringSDFModel(config, box)
    r, d = 0.2, 0.2                                # normalised: centres one radius apart
    centre = torch.as_tensor(box.to_normalised(np.array([2.0, 1.5, 1.25])), dtype=torch.float32)
    model.sdf_net.sphere_centres[1] = centre - torch.tensor([d / 2, 0, 0])
    model.sdf_net.sphere_centres[2] = centre + torch.tensor([d / 2, 0, 0])
    r_m, d_m = r * box.scale, d * box.scale
    lens = np.pi * (4 * r_m + d_m) * (2 * r_m - d_m) ** 2 / 12
    expected = 4 / 3 * np.pi * r_m ** 3 - lens / 2
    classes = np.array([0, 6, 8])
    closed = extract_objects(model, config.extract, classes, np.ones(3), resolution=128)
    shell = extract_objects(model, config.merged({"extract.object_mesh": "shell"}).extract, classes,
                            np.ones(3), resolution=128)
    assert [o.channel for o in closed] == [1, 2] == [o.channel for o in shell]
    for c, s in zip(closed, shell):
        assert c.watertight and not s.watertight and s.shell is None
        assert c.volume == pytest.approx(expected, rel=0.05)
        assert s.volume == pytest.approx(expected, rel=0.08)          # grid cells
        assert len(c.shell.faces) == len(s.mesh.faces)                # the same visible surface
        # the contact faces lie on the bisector plane, inside the other sphere's reach
        x_plane = box.to_world(centre.numpy())[0]
        contact = np.abs(c.mesh.vertices[:, 0] - x_plane) < 0.5 * box.scale * 2 / 128
        assert contact.sum() > 20
        assert c.mesh.is_volume and c.mesh.volume > 0          # outward faces
    # the two solids meet but do not overlap
    assert closed[0].mesh.bounds[1][0] <= closed[1].mesh.bounds[0][0] + 0.02


def test_oriented_box_of_a_rotated_box():
    mesh = trimesh.creation.box(extents=[2.0, 1.0, 0.5])
    yaw = np.radians(30)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    T[:3, 3] = [1.0, 2.0, 0.25]
    mesh.apply_transform(T)
    pose, size = oriented_box_upright(np.asarray(mesh.vertices))
    assert np.allclose(sorted(size[:2]), [1.0, 2.0], atol=1e-4) and size[2] == pytest.approx(0.5)
    assert np.allclose(pose[:3, 3], [1.0, 2.0, 0.25], atol=1e-4)


def _obj(centre, size=0.5, channel=1):
    mesh = trimesh.creation.box(extents=[size] * 3)
    mesh.apply_translation(centre)
    pose, box = oriented_box_upright(np.asarray(mesh.vertices))
    return ExtractedObject(channel, mesh, 6, 0.9, np.asarray(centre, float), pose, box, float(mesh.volume))


def test_tracker_keeps_ids_stable_and_never_reuses_them(tmp_path):
    tracker = ObjectTracker(match_iou=0.2, confirm_after=1, drop_after=1)
    first = tracker.update([_obj([0, 0, 0]), _obj([3, 0, 0])], stamp=1.0)
    assert [t.id for t in first] == [1, 2]
    # Channels swapped and objects moved a little: ids follow the geometry.
    second = tracker.update([_obj([3.05, 0, 0], channel=5), _obj([0.02, 0, 0], channel=7)], stamp=2.0)
    by_id = {t.id: t for t in second}
    assert by_id[1].object.channel == 7 and by_id[2].object.channel == 5
    assert by_id[1].first_seen == 1.0 and by_id[1].last_updated == 2.0
    # One disappears, a new one appears: a fresh id, the old one is not reused.
    third = tracker.update([_obj([0.02, 0, 0], channel=7), _obj([-4, 0, 0], channel=2)], stamp=3.0)
    assert sorted(t.id for t in third) == [1, 3]
    assert box_iou_3d(np.array([[0, 0, 0], [1, 1, 1.0]]), np.array([[0.5, 0, 0], [1.5, 1, 1.0]])) == pytest.approx(1 / 3)
    path = export_objects(third, tmp_path, SCANNET_REDUCED, iteration=7)
    import json
    data = json.loads(path.read_text())
    assert data["iteration"] == 7 and [o["id"] for o in data["objects"]] == [1, 3]
    assert data["objects"][0]["class_name"] == "chair"
    assert (tmp_path / data["objects"][0]["mesh"]).exists() and (tmp_path / "scene_objects.ply").exists()


def test_tracker_hysteresis_hides_flickering_fragments_and_bridges_one_miss():
    tracker = ObjectTracker(match_iou=0.2, confirm_after=2, drop_after=2)
    table, chair, fragment = _obj([0, 0, 0]), _obj([3, 0, 0]), _obj([-3, 0, 0], channel=4)
    # First extraction: nothing has been seen twice yet.
    assert tracker.update([table, chair], stamp=1.0) == []
    second = tracker.update([table, chair, fragment], stamp=2.0)
    assert [t.id for t in second] == [1, 2] and second[0].first_seen == 1.0
    # The fragment vanishes before its second sighting and never gets an id; the chair
    # is missed once and stays published with its last geometry.
    third = tracker.update([table], stamp=3.0)
    assert [(t.id, t.misses) for t in third] == [(1, 0), (2, 1)]
    assert third[1].object is second[1].object
    # The chair comes back: same id, miss count reset.
    fourth = tracker.update([table, _obj([3.02, 0, 0], channel=9)], stamp=4.0)
    assert [(t.id, t.misses, t.object.channel) for t in fourth] == [(1, 0, 1), (2, 0, 9)]
    # Two misses in a row drop it; the fragment's reappearance needs two sightings again
    # and then takes a fresh id (3: ids are never reused).
    tracker.update([table, fragment], stamp=5.0)
    sixth = tracker.update([table, fragment], stamp=6.0)
    assert [t.id for t in sixth] == [1, 3]
    # A save / offline extraction confirms new objects at once.
    final = tracker.update([table, fragment, _obj([0, 4, 0], channel=6)], stamp=7.0, confirm_new=True)
    assert [t.id for t in final] == [1, 3, 4]


def test_tracker_matches_published_objects_before_candidates():
    tracker = ObjectTracker(match_iou=0.1, confirm_after=2, drop_after=2)
    table = _obj([0, 0, 0])
    tracker.update([table], stamp=1.0)
    # The table is confirmed; a fragment beside it becomes a candidate.
    assert [t.id for t in tracker.update([table, _obj([0.4, 0, 0], channel=5)], stamp=2.0)] == [1]
    # The table's next extraction overlaps the candidate more (IoU 0.67) than the
    # published table (0.25): it still continues the published object.
    moved = _obj([0.3, 0, 0], channel=3)
    third = tracker.update([moved], stamp=3.0)
    assert [(t.id, t.misses, t.object.channel) for t in third] == [(1, 0, 3)]
    assert not tracker.candidates
    with pytest.raises(ValueError, match="at least 1"):
        ObjectTracker(confirm_after=0)


class _ShapesSDF(torch.nn.Module):
    """A fixed SDF over a room: channel 0 the room (an inverted box), channel 1 two
    spheres ``gap`` apart (two objects never seen side by side in one channel),
    channel 2 one sphere."""

    def __init__(self, gap_m: float, box: SceneBox):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.box = box
        r = 0.3
        self.r = r / box.scale
        a = np.array([1.0, 1.5, 0.6])
        b = a + np.array([2 * r + gap_m, 0.0, 0.0])
        self.centres_m = [a, b, np.array([3.2, 0.7, 0.6])]
        self.centres = torch.as_tensor(np.stack([box.to_normalised(c) for c in self.centres_m]), dtype=torch.float32)

    def sdf(self, x):
        d = (x[:, None, :] - self.centres[None]).norm(dim=-1) - self.r
        room = (0.98 - x.abs()).min(dim=-1).values
        return torch.stack([room, torch.minimum(d[:, 0], d[:, 1]), d[:, 2]], dim=-1)


class _ShapesModel(torch.nn.Module):
    num_channels = 3

    def __init__(self, gap_m: float):
        super().__init__()
        self.box = SceneBox(np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.5]]), padding_m=0.0)
        self.sdf_net = _ShapesSDF(gap_m, self.box)
        lo, hi = self.box.lo, self.box.hi
        self.register_buffer("domain_lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("domain_hi", torch.as_tensor(hi, dtype=torch.float32))


@pytest.mark.parametrize("gap_m", [0.3, 0.05])
def test_split_channels_gives_one_object_per_separate_part_with_its_own_class(gap_m):
    """Channel 1 holds two spheres: with ``split_channels`` they are two objects (ids 1
    and 1 + 3, each with the class the segmenter saw there) when they stand farther
    apart than ``split_gap_m``, one object when closer; without it always one."""
    from clusteringsdf_core.training.class_votes import ClassVotes

    model = _ShapesModel(gap_m)
    config = preset("cpu").extract.replace(min_object_faces=50, min_component_faces=20, split_gap_m=0.1)
    votes = ClassVotes(len(SCANNET_REDUCED))
    a, b, _ = model.sdf_net.centres_m
    rng = np.random.default_rng(0)
    for centre, cls in ((a, 6), (b, 8)):
        pts = centre + 0.3 * (v := rng.normal(size=(400, 3))) / np.linalg.norm(v, axis=1, keepdims=True)
        votes.add(torch.as_tensor(pts, dtype=torch.float32), torch.full((400,), cls))
    classes = np.array([0, 6, 7])
    plain = extract_objects(model, config.replace(split_channels=False), classes, np.ones(3), resolution=96,
                            class_votes=votes)
    assert [(o.channel, o.part) for o in plain] == [(1, 0), (2, 0)]
    split = extract_objects(model, config.replace(split_channels=True), classes, np.ones(3), resolution=96,
                            class_votes=votes)
    if gap_m < 0.1:
        assert [(o.channel, o.part, o.instance_id) for o in split] == [(1, 0, 1), (2, 0, 2)]
        assert split[0].class_id == 6          # not split: the channel's class
        return
    assert [(o.channel, o.part, o.instance_id) for o in split] == [(1, 0, 1), (1, 1, 4), (2, 0, 2)]
    by_centre = {int(np.argmin([np.linalg.norm(o.centroid - c) for c in (a, b)])): o for o in split[:2]}
    assert by_centre[0].class_id == 6 and by_centre[1].class_id == 8
    assert by_centre[0].confidence == pytest.approx(1.0)
    sphere = 4 / 3 * np.pi * 0.3 ** 3
    assert all(o.volume == pytest.approx(sphere, rel=0.15) for o in split)
    assert plain[0].volume == pytest.approx(2 * sphere, rel=0.15)
    # the 2D labels follow the parts: points on each sphere take its part's id and class
    from clusteringsdf_core.evaluation import PartLookup

    lookup = PartLookup(split)
    points = np.stack([a + [0, 0, 0.3], b + [0, 0, 0.3], model.sdf_net.centres_m[2] + [0, 0, 0.3]])[None]
    channel = np.array([[1, 1, 2]])
    instance, semantic = channel.copy(), classes[channel].copy()
    lookup.apply(channel, points, instance, semantic)
    assert instance.tolist() == [[by_centre[0].instance_id, by_centre[1].instance_id, 2]]
    assert semantic.tolist() == [[6, 8, 7]]


def test_box_distance_is_negative_inside_a_union_of_boxes():
    from clusteringsdf_core.extract.objects import box_distance

    boxes = [np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), np.array([[2.0, 0.0, 0.0], [3.0, 1.0, 0.5]])]
    points = np.array([[0.5, 0.5, 0.5], [2.5, 0.5, 0.25], [1.5, 0.5, 0.5], [2.5, 0.5, 0.75], [0.5, 0.5, -0.2]])
    np.testing.assert_allclose(box_distance(points, boxes), [-0.5, -0.25, 0.5, 0.25, 0.2])
