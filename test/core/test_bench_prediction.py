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
