"""Synthetic scenes: deterministic, physically consistent ground truth, canonical layout."""

import numpy as np
import pytest
import trimesh

from clusteringsdf_core.data.dataset import load_scene
from clusteringsdf_core.data.synthetic import (SyntheticSceneConfig, generate_scene, stored_config_matches,
                                               write_synthetic_scene)
from clusteringsdf_core.data.synthetic.furniture import (SH3D_DIR, CatalogLibrary, ProceduralLibrary,
                                                         classify_name, parse_properties)
from clusteringsdf_core.geometry.camera import look_at

SMALL = dict(width=64, height=48, num_train=6, num_test=3, num_objects=4, num_small_objects=1)


@pytest.fixture(scope="module")
def procedural_scene():
    return generate_scene(SyntheticSceneConfig(seed=3, furniture="procedural", **SMALL))


@pytest.fixture(scope="module")
def touching_scene():
    return generate_scene(SyntheticSceneConfig(seed=2, furniture="procedural", layout="touching",
                                               width=64, height=48, num_train=6, num_test=3))


def _box_gap(a, b) -> float:
    """Largest separation of two 3D boxes along an axis (negative: they overlap)."""
    (a0, a1), (b0, b1) = a, b
    return float(np.max(np.maximum(b0 - a1, a0 - b1)))


def test_look_at_gives_an_optical_frame():
    T = look_at([0, 0, 1.5], [2, 0, 1.5])
    x, y, z = T[:3, 0], T[:3, 1], T[:3, 2]
    assert np.allclose(z, [1, 0, 0]) and np.allclose(y, [0, 0, -1])  # forward, down
    assert np.allclose(x, [0, -1, 0])                                  # right = -y (left) in z-up world
    assert np.isclose(np.linalg.det(T[:3, :3]), 1.0)


def test_same_seed_same_scene_other_seed_other_scene():
    a = generate_scene(SyntheticSceneConfig(seed=5, furniture="procedural", **SMALL))
    b = generate_scene(SyntheticSceneConfig(seed=5, furniture="procedural", **SMALL))
    c = generate_scene(SyntheticSceneConfig(seed=6, furniture="procedural", **SMALL))
    for fa, fb in zip(a.dataset.train, b.dataset.train):
        assert np.array_equal(fa.rgb, fb.rgb) and np.array_equal(fa.depth_m, fb.depth_m)
        assert np.array_equal(fa.gt_instance, fb.gt_instance)
    assert not np.array_equal(a.dataset.train[0].rgb, c.dataset.train[0].rgb)


def test_objects_stand_on_the_floor_without_overlap(procedural_scene):
    s = procedural_scene
    assert len(s.objects) >= SMALL["num_objects"]
    floor_objects = [o for o in s.objects if o.mesh().bounds[0][2] < 0.01]
    assert len(floor_objects) >= SMALL["num_objects"]
    for o in floor_objects:
        assert abs(o.mesh().bounds[0][2]) < 1e-6
    boxes = [o.mesh().bounds for o in floor_objects]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            (a0, a1), (b0, b1) = boxes[i], boxes[j]
            overlap = np.minimum(a1[:2], b1[:2]) - np.maximum(a0[:2], b0[:2])
            assert (overlap <= 1e-6).any(), f"objects {i} and {j} overlap"
    w, d, h = s.room_size
    for o in s.objects:
        lo, hi = o.mesh().bounds
        assert lo[0] > -w / 2 and hi[0] < w / 2 and lo[1] > -d / 2 and hi[1] < d / 2 and hi[2] < h


def test_depth_back_projects_onto_the_gt_surfaces(procedural_scene):
    """Depth and pose agree with the meshes: back-projected points lie on them."""
    s = procedural_scene
    scene_mesh = trimesh.util.concatenate([o.mesh() for o in s.objects] + [m for m, _ in s.stuff])
    frame = s.dataset.train[2]
    exact = generate_scene(SyntheticSceneConfig(seed=3, furniture="procedural", depth_noise=False,
                                                **SMALL)).dataset.train[2]
    K = exact.intrinsics
    v, u = np.nonzero(exact.depth_m > 0)
    z = exact.depth_m[v, u]
    pts_cam = np.stack([(u + 0.5 - K.cx) / K.fx * z, (v + 0.5 - K.cy) / K.fy * z, z], 1)
    pts = pts_cam @ exact.T_world_cam[:3, :3].T + exact.T_world_cam[:3, 3]
    _, dist, _ = trimesh.proximity.closest_point(scene_mesh, pts[::7])
    assert np.percentile(dist, 99) < 1e-3
    # The noisy depth stays close to the exact one where it is valid.
    both = (frame.depth_m > 0) & (exact.depth_m > 0)
    assert np.median(np.abs(frame.depth_m[both] - exact.depth_m[both])) < 0.02


@pytest.mark.parametrize("fixture", ["procedural_scene", "touching_scene"])
def test_gt_labels_are_consistent_with_classes(fixture, request):
    s = request.getfixturevalue(fixture)
    classes = s.dataset.classes
    class_of = {o.instance_id: o.class_id for o in s.objects}
    for frame in list(s.dataset.train) + list(s.dataset.test):
        frame.validate()
        inst, sem = frame.gt_instance, frame.gt_semantic
        stuff = inst == 0
        assert set(np.unique(sem[stuff])) <= set(classes.stuff_ids)
        for i in np.unique(inst[~stuff]):
            assert np.all(sem[inst == i] == class_of[int(i)])
            assert classes[class_of[int(i)]].is_thing


def test_test_views_are_novel(procedural_scene):
    s = procedural_scene
    train_pos = np.array([f.T_world_cam[:3, 3] for f in s.dataset.train])
    for f in s.dataset.test:
        assert np.min(np.linalg.norm(train_pos - f.T_world_cam[:3, 3], axis=1)) > 0.05


def test_canonical_layout_round_trip(procedural_scene, tmp_path):
    s = procedural_scene
    rng = np.random.default_rng(0)
    labelled = [f.with_labels(instance=rng.permutation(20)[f.gt_instance].astype(np.int32))
                for f in s.dataset.train]
    root = write_synthetic_scene(s, tmp_path / "scene", labelled_frames=(labelled, list(s.dataset.test)))
    back = load_scene(root, labels="sim")
    assert len(back.train) == len(s.dataset.train) and len(back.test) == len(s.dataset.test)
    a, b = labelled[1], back.train[1]
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.gt_instance, b.gt_instance) and np.array_equal(a.instance, b.instance)
    assert np.abs(a.depth_m - b.depth_m).max() <= 0.0005 + 1e-6       # millimetre PNG
    assert np.allclose(a.T_world_cam, b.T_world_cam, atol=1e-8)
    assert b.intrinsics == a.intrinsics and np.allclose(back.bounds, s.dataset.bounds)
    meshes, stuff = back.load_gt_meshes()
    assert sorted(meshes) == [o.instance_id for o in s.objects] and stuff is not None
    with pytest.raises(ValueError, match="no label variant"):
        load_scene(root, labels="nonexistent")


def test_default_layout_is_unchanged():
    """The apart layout places what it placed before the layout option (pinned poses), and
    a scene written before the option counts as that layout."""
    s = generate_scene(SyntheticSceneConfig(seed=0, furniture="procedural", **SMALL))
    placed = [(o.model.class_name, *np.round(o.T_world_obj[:3, 3], 3)) for o in s.objects]
    assert placed == [("chair", -1.348, 0.946, 0.0), ("sofa", 0.625, 0.491, 0.0),
                      ("desk", -1.341, -0.292, 0.0), ("chair", 0.327, -0.789, 0.0),
                      ("lamp", -1.163, -0.188, 0.735)]
    assert np.allclose(s.dataset.test[0].T_world_cam[:3, 3], [2.075, 1.376, 1.449], atol=1e-3)
    assert s.dataset.name == "synthetic_seed0"
    stored = {k: v for k, v in s.dataset.meta["config"].items() if k != "layout"}
    assert stored_config_matches(stored, s.config)
    assert not stored_config_matches(stored, SyntheticSceneConfig(
        seed=0, furniture="procedural", layout="touching", **SMALL))
    with pytest.raises(ValueError, match="unknown layout"):
        SyntheticSceneConfig(layout="stacked")


def test_touching_layout_puts_objects_in_contact(touching_scene):
    s = touching_scene
    assert s.dataset.name == "synthetic_seed2_touching" and s.dataset.meta["config"]["layout"] == "touching"
    boxes = [o.mesh().bounds for o in s.objects]
    touching = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                if _box_gap(boxes[i], boxes[j]) < 0.02]
    assert len(touching) >= 4
    w, d, _ = s.room_size
    at_walls = [o for o, (lo, hi) in zip(s.objects, boxes) if min(lo[0] + w / 2, w / 2 - hi[0]) < 0.002]
    assert len(at_walls) >= 3
    by_class = lambda *names: [o for o in s.objects if o.model.class_name in names]  # noqa: E731
    pushed = 0
    for table in by_class("table", "desk"):
        (t0, t1), top = table.mesh().bounds[:, :2], table.mesh().bounds[1][2]
        for chair in by_class("chair"):
            v = chair.mesh().vertices
            under = (v[:, :2] > t0).all(1) & (v[:, :2] < t1).all(1)
            if under.any():           # the chair reaches under the table, below its top
                pushed += 1
                assert v[under, 2].max() < top
    assert pushed >= 2
    small = by_class("lamp", "television")
    assert small
    for item in small:                # resting on the highest point of a support, no gap
        lo = item.mesh().bounds[0]
        assert any(abs(lo[2] - b[1][2]) < 1e-6 and _box_gap(b, item.mesh().bounds) <= 1e-6
                   for o, b in zip(s.objects, boxes) if o is not item)


def test_touching_layout_objects_do_not_cut_into_each_other(touching_scene):
    """Procedural parts are boxes (and small cylinders, cones): no surface point of one object
    lies 5 mm or more inside the box of a part of another, in that object's model frame."""
    s = touching_scene
    for a in s.objects:
        points, _ = trimesh.sample.sample_surface(a.mesh(), 3000, seed=0)
        for b in s.objects:
            if b is a:
                continue
            local = (points - b.T_world_obj[:3, 3]) @ b.T_world_obj[:3, :3]
            for part, _ in b.model.parts:
                lo, hi = part.bounds
                inside = ((local > lo + 0.005) & (local < hi - 0.005)).all(1)
                assert not inside.any(), f"{a.model.class_name} {a.instance_id} cuts into " \
                                         f"{b.model.class_name} {b.instance_id}"


def test_touching_layout_keeps_the_camera_path_free(touching_scene):
    s = touching_scene
    w, d, h = s.room_size
    cams = np.array([f.T_world_cam[:3, 3] for f in list(s.dataset.train) + list(s.dataset.test)])
    assert (np.abs(cams[:, 0]) < w / 2 - 0.3).all() and (np.abs(cams[:, 1]) < d / 2 - 0.3).all()
    for o in s.objects:
        lo, hi = o.mesh().bounds
        distance = np.linalg.norm(np.maximum(np.maximum(lo - cams, cams - hi), 0), axis=1)
        assert distance.min() > 0.3, f"a camera passes {distance.min():.2f} m from {o.model.class_name}"


def test_catalog_names_map_to_classes():
    assert classify_name("Armchair") == "chair"
    assert classify_name("Coffee table") == "table"
    assert classify_name("Desk lamp") == "lamp"
    assert classify_name("Bedside table") == "cabinet"
    assert classify_name("TV stand") == "cabinet"
    assert classify_name("TV 16:9") == "television"
    assert classify_name("Street lamp") is None
    assert classify_name("Table tennis bat") is None
    assert classify_name("Corner sofa") == "sofa"


def test_properties_parser_handles_escapes_and_continuations():
    text = "# c\nname#1=Caf\\u00e9 table\nwidth#1 = 80\\\n.5\n! other comment\nid#1=A\\:B"
    assert parse_properties(text) == {"name#1": "Café table", "width#1": "80.5", "id#1": "A:B"}


def test_procedural_library_covers_its_classes():
    lib, rng = ProceduralLibrary(), np.random.default_rng(0)
    for cls in lib.classes():
        model = lib.sample(cls, rng)
        lo, hi = model.mesh().bounds
        assert abs(lo[2]) < 1e-9 and np.allclose((lo[:2] + hi[:2]) / 2, 0, atol=1e-9)


@pytest.mark.skipif(not SH3D_DIR.is_dir(), reason="Debian package sweethome3d-furniture is not "
                    "installed (make setup installs it); the procedural fallback is tested above")
def test_real_furniture_models_load_at_catalog_size():
    lib, rng = CatalogLibrary(), np.random.default_rng(1)
    assert len(lib) > 100 and {"chair", "table", "sofa", "bed", "lamp"} <= set(lib.classes())
    for cls in ("chair", "table", "sofa"):
        model = lib.sample(cls, rng)
        lo, hi = model.mesh().bounds
        assert np.allclose(hi - lo, model.size_m, rtol=1e-6)
        assert 0.3 < model.size_m[2] < 2.4
    scene = generate_scene(SyntheticSceneConfig(seed=0, **SMALL))
    assert scene.furniture_source == "sweethome3d"
    assert any(o.model.source.startswith(("BlendSwap", "Scopia", "KatorLegaz")) for o in scene.objects)
