"""ScenePrediction: ray-cast label rendering, label transfer, and the GT scene mesh."""

import numpy as np
import pytest

from _bench_toy_scene import BOXES, FLOOR, build_toy_scene
from clusteringsdf_core.bench import ScenePrediction, gt_scene_labels


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return build_toy_scene(tmp_path_factory.mktemp("toy"), n_views=6)


@pytest.fixture(scope="module")
def gt(scene):
    return gt_scene_labels(scene)


@pytest.fixture(scope="module")
def gt_prediction(scene, gt):
    mesh, inst, sem = gt
    classes = {o.id: o.class_id for o in scene.objects}
    return ScenePrediction("gt", mesh, inst, classes, {i: 1.0 for i in classes}, vertex_semantic=sem)


def test_gt_scene_labels_concatenate_objects_and_stuff(scene, gt):
    mesh, inst, sem = gt
    objects, stuff = scene.load_gt_meshes()
    assert len(mesh.vertices) == sum(len(m.vertices) for m in objects.values()) + len(stuff.vertices)
    assert set(np.unique(inst)) == {0, 1, 2, 3}
    for oid, name, _, _ in BOXES:
        assert set(np.unique(sem[inst == oid])) == {scene.classes.id_of(name)}
    # the stuff mesh (a floor slab) has no per-vertex class: geometry says floor
    top = (inst == 0) & (mesh.vertices[:, 2] > -0.001) & np.all(np.abs(mesh.vertices[:, :2]) < 1.9, axis=1)
    assert top.sum() > 100 and np.all(sem[top] == FLOOR)


def test_render_labels_reproduce_the_gt_maps(scene, gt_prediction):
    for frame in list(scene.train) + list(scene.test):
        semantic, instance = gt_prediction.render_labels(frame)
        assert instance.shape == frame.gt_instance.shape and instance.dtype == np.int32
        assert np.mean(instance == frame.gt_instance) > 0.95
        assert np.mean(semantic == frame.gt_semantic) > 0.95


def test_semantics_default_to_the_instance_classes(scene, gt):
    mesh, inst, _ = gt
    pred = ScenePrediction("no_sem", mesh, inst, {1: 7, 2: 8, 3: 9}, {1: 0.5, 2: 0.5, 3: 0.5})
    sem = pred.semantic_per_vertex()
    assert np.all(sem[inst == 2] == 8) and np.all(sem[inst == 0] == 0)
    semantic, instance = pred.render_labels(scene.train[0])
    assert set(np.unique(semantic[instance == 3])) <= {9}
    assert pred.instance_ids == [1, 2, 3]


def test_label_transfer_to_gt_vertices(gt_prediction, gt):
    mesh, inst, sem = gt
    got_inst, got_sem = gt_prediction.to_vertex_labels_on(mesh.vertices, max_distance_m=0.01)
    assert np.array_equal(got_inst, inst) and np.array_equal(got_sem, sem)
    far = mesh.vertices + np.array([0.0, 0.0, 10.0])
    far_inst, far_sem = gt_prediction.to_vertex_labels_on(far, max_distance_m=0.05)
    assert not far_inst.any() and not far_sem.any()


def test_a_renderer_replaces_ray_casting_and_bad_shapes_raise(scene, gt):
    frame = scene.train[0]
    shape = frame.gt_instance.shape
    pred = ScenePrediction("neural", None, None, {1: 5}, {1: 0.9},
                           renderer=lambda f: (np.full(shape, 5), np.ones(shape)))
    semantic, instance = pred.render_labels(frame)
    assert semantic.dtype == np.int32 and np.all(instance == 1) and np.all(semantic == 5)
    with pytest.raises(ValueError):
        pred.to_vertex_labels_on(np.zeros((3, 3)))
    mesh, inst, _ = gt
    with pytest.raises(ValueError):
        ScenePrediction("bad", mesh, inst[:-1], {}, {})
    with pytest.raises(ValueError):
        ScenePrediction("nothing", None, None, {}, {})


def test_enclosed_volume_of_open_and_thin_meshes():
    import trimesh

    from clusteringsdf_core.bench.scenes import enclosed_volume

    box = trimesh.creation.box(extents=(0.5, 0.4, 0.3))
    box.apply_transform(trimesh.transformations.rotation_matrix(0.5, (0.2, 0.3, 1.0)))
    assert enclosed_volume(box) == pytest.approx(box.volume, rel=0.05)
    # a table top 3 cm thick: a voxel and a half at 2 cm, counted at its thickness
    plate = trimesh.creation.box(extents=(1.0, 0.8, 0.03))
    assert enclosed_volume(plate) == pytest.approx(plate.volume, rel=0.1)
    # overlapping parts count their union once (the mesh's own volume counts it twice)
    a = trimesh.creation.box(extents=(0.5, 0.4, 0.3))
    parts = trimesh.util.concatenate([a, a.copy().apply_translation((0.1, 0.05, 0.05))])
    assert parts.volume == pytest.approx(2 * a.volume)
    assert enclosed_volume(parts) == pytest.approx(2 * a.volume - 0.4 * 0.35 * 0.25, rel=0.05)
    # six separate panels with seams of a few mm (narrower than a voxel) still enclose
    panels = []
    for axis in range(3):
        for side in (-1.0, 1.0):
            normal = np.eye(3)[axis] * side
            face = a.faces[np.abs(a.face_normals @ normal - 1.0) < 1e-6]
            panel = trimesh.Trimesh(a.vertices, face).copy()
            centre = panel.vertices.mean(axis=0)
            panel.vertices = centre + (panel.vertices - centre) * 0.97
            panels.append(panel)
    seams = trimesh.util.concatenate(panels)
    assert not seams.is_watertight
    assert enclosed_volume(seams) == pytest.approx(a.volume, rel=0.08)


def test_solid_metrics_match_gt_objects_and_score_their_volumes(scene):
    from clusteringsdf_core.bench.evaluate import evaluate_prediction
    from clusteringsdf_core.bench.scenes import load_gt_scene

    # the densified GT mesh as the prediction: labels transfer vertex to vertex
    dense = load_gt_scene(scene)
    mesh, inst, sem = dense.mesh, dense.vertex_instance, dense.vertex_semantic
    classes = {o.id: o.class_id for o in scene.objects}
    volume = {oid: float(np.prod(ext)) for oid, _, ext, _ in BOXES}
    # object 1 exact and closed, object 2 twice its volume, object 3 open at 0.85x
    solids = {1: (volume[1], True), 2: (2.0 * volume[2], True), 3: (0.85 * volume[3], False)}
    pred = ScenePrediction("solids", mesh, inst, classes, {i: 1.0 for i in classes},
                           vertex_semantic=sem, instance_solid=solids)
    cache: dict = {}     # the GT volumes once for the three predictions
    result = evaluate_prediction(scene, pred, gt_scene=dense, geometry_cache=cache)
    assert result["object_watertight"] == pytest.approx(200.0 / 3)
    assert result["objects_matched"] == 3
    assert result["volume_ratios"][0] == pytest.approx(0.85, abs=0.04)
    assert result["volume_ratios"][1] == pytest.approx(1.0, abs=0.04)
    assert result["volume_ratios"][2] == pytest.approx(2.0, abs=0.08)
    assert result["volume_within_20"] == pytest.approx(200.0 / 3)
    # objects swapped between GT ids: no match has the right volume any more
    swapped = ScenePrediction("swapped", mesh, np.where(inst == 1, 3, np.where(inst == 3, 1, inst)),
                              classes, {i: 1.0 for i in classes}, vertex_semantic=sem,
                              instance_solid={1: (volume[1], True), 3: (volume[3], True)})
    out = evaluate_prediction(scene, swapped, gt_scene=dense, geometry_cache=cache)
    assert out["objects_matched"] == 2 and out["volume_within_20"] == 0.0
    # methods without solids report none
    plain = evaluate_prediction(scene, ScenePrediction("plain", mesh, inst, classes, {i: 1.0 for i in classes}),
                                gt_scene=dense, geometry_cache=cache)
    assert plain["object_watertight"] is None and plain["volume_within_20"] is None
