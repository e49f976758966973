"""Planner-facing outputs: vision_msgs/Detection3DArray and the MoveIt CollisionObject
feed (ADD / MOVE / REMOVE as ids appear, change and disappear)."""

import sys
import types

import numpy as np
import pytest
import trimesh

from test_mapping_node import _overrides, _tracked_box


def _box(centre, extents=(0.4, 0.6, 0.8), yaw=0.0):
    mesh = trimesh.creation.box(extents=extents)
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = centre
    mesh.apply_transform(pose)
    return pose, np.asarray(mesh.vertices), np.asarray(mesh.faces)


def test_collision_diff_adds_moves_replaces_and_removes():
    from clusteringsdf_ros.planner_outputs import CollisionDiff

    diff = CollisionDiff()
    a, b = _box((1.0, 0.0, 0.4)), _box((3.0, 1.0, 0.4), extents=(1.0, 1.0, 0.5))
    ops = diff.update([(7, *b), (3, *a)])
    assert [(o.object_id, o.op) for o in ops] == [(3, "add"), (7, "add")]
    np.testing.assert_allclose(np.abs(ops[0].vertices), [[0.2, 0.3, 0.4]] * 8)   # in the object's frame
    assert diff.update([(3, *a), (7, *b)]) == []                               # nothing changed
    assert diff.update([(3, *_box((1.0005, 0.0, 0.4))), (7, *b)]) == []         # below 1 mm
    moved = _box((1.5, 0.2, 0.4), yaw=0.5)                                     # the same shape, moved
    [op] = diff.update([(3, *moved), (7, *b)])
    assert (op.object_id, op.op, op.vertices) == (3, "move", None)
    np.testing.assert_allclose(op.pose, moved[0])
    grown = _box((1.5, 0.2, 0.4), extents=(0.5, 0.6, 0.8), yaw=0.5)             # its shape changed
    [op] = diff.update([(3, *grown), (7, *b)])
    assert (op.object_id, op.op) == (3, "add")
    assert [(o.object_id, o.op) for o in diff.update([(3, *grown)])] == [(7, "remove")]
    assert [(o.object_id, o.op) for o in diff.remove_all()] == [(3, "remove")]
    assert diff.update([]) == []


def _stand_in(name, fields, **constants):
    """A message class with ``fields`` (name -> default factory), as rosidl makes them."""
    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(fields)
        if unknown:
            raise AssertionError(f"{name} has no field(s) {sorted(unknown)}")
        for f, default in fields.items():
            setattr(self, f, kwargs[f] if f in kwargs else default())
    return type(name, (), {"__init__": __init__, **constants})


@pytest.fixture
def stand_in_messages(monkeypatch):
    """vision_msgs and moveit_msgs with the fields of their ROS 2 definitions, where
    the packages are not installed (the real ones are used by the test below)."""
    from geometry_msgs.msg import Pose, PoseWithCovariance, Vector3
    from std_msgs.msg import Header

    vision = types.ModuleType("vision_msgs.msg")
    vision.ObjectHypothesis = _stand_in("ObjectHypothesis", {"class_id": str, "score": float})
    vision.ObjectHypothesisWithPose = _stand_in("ObjectHypothesisWithPose", {
        "hypothesis": vision.ObjectHypothesis, "pose": PoseWithCovariance})
    vision.BoundingBox3D = _stand_in("BoundingBox3D", {"center": Pose, "size": Vector3})
    vision.Detection3D = _stand_in("Detection3D", {"header": Header, "results": list,
                                                   "bbox": vision.BoundingBox3D, "id": str})
    vision.Detection3DArray = _stand_in("Detection3DArray", {"header": Header, "detections": list})
    moveit = types.ModuleType("moveit_msgs.msg")
    moveit.CollisionObject = _stand_in("CollisionObject", {
        "header": Header, "pose": Pose, "id": str, "meshes": list, "mesh_poses": list,
        "operation": int}, ADD=0, REMOVE=1, APPEND=2, MOVE=3)
    for package, module in (("vision_msgs", vision), ("moveit_msgs", moveit)):
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
        monkeypatch.setitem(sys.modules, f"{package}.msg", module)
    return vision, moveit


def _objects_msg():
    from clusteringsdf_core.data.classes import SCANNET_REDUCED
    from clusteringsdf_core.online.extraction import ObjectsResult
    from clusteringsdf_ros.object_msgs import objects_to_msg

    result = ObjectsResult(seq=1, iteration=50, stamp_ns=10**9, objects=(_tracked_box(3),), seconds=0.1)
    return objects_to_msg(result, SCANNET_REDUCED, "map")


def _check_messages(objects_msg):
    from clusteringsdf_ros import transforms as tfm
    from clusteringsdf_ros.planner_outputs import CollisionDiff, collision_inputs, collision_objects
    from clusteringsdf_ros.planner_outputs import objects_to_detections

    [o] = objects_msg.objects
    detections = objects_to_detections(objects_msg)
    [d] = detections.detections
    assert detections.header.frame_id == "map" and d.id == "3"
    [h] = d.results
    assert h.hypothesis.class_id == o.class_name and h.hypothesis.score == pytest.approx(o.confidence)
    assert d.bbox.center == o.bbox_pose and d.bbox.size == o.bbox_size and h.pose.pose == o.bbox_pose
    diff = CollisionDiff()
    [add] = collision_objects(diff.update(collision_inputs(objects_msg)), objects_msg.header)
    from moveit_msgs.msg import CollisionObject

    assert add.operation == CollisionObject.ADD and add.id == "clusteringsdf_3"
    assert add.header.frame_id == "map" and add.pose == o.bbox_pose and len(add.mesh_poses) == 1
    # the mesh in the object's frame, put back by the pose, is the published mesh
    local = np.array([[p.x, p.y, p.z] for p in add.meshes[0].vertices])
    world = local @ tfm.pose_to_matrix(add.pose)[:3, :3].T + tfm.pose_to_matrix(add.pose)[:3, 3]
    np.testing.assert_allclose(world, [[p.x, p.y, p.z] for p in o.mesh.vertices], atol=1e-9)
    assert len(add.meshes[0].triangles) == len(o.mesh.triangles)
    objects_msg.objects = []
    [remove] = collision_objects(diff.update(collision_inputs(objects_msg)), objects_msg.header)
    assert remove.operation == CollisionObject.REMOVE and remove.id == "clusteringsdf_3"


def test_detections_and_collision_objects_with_the_real_packages():
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs is not installed (no PyPI wheel)")
    pytest.importorskip("moveit_msgs.msg", reason="moveit_msgs is not installed (no PyPI wheel)")
    _check_messages(_objects_msg())


def test_detections_and_collision_objects_built_field_by_field(stand_in_messages):
    _check_messages(_objects_msg())


def test_an_output_whose_package_is_missing_is_off_and_reported(ros_context):
    import importlib.util

    if importlib.util.find_spec("vision_msgs") is not None:
        pytest.skip("vision_msgs is installed here")
    from clusteringsdf_ros import mapping_node as mn

    node = mn.MappingNode(context=ros_context, namespace="/t_planner", parameter_overrides=_overrides(
        **{"ros.detections_topic": "detections_3d", "ros.save_on_shutdown": False}))
    try:
        assert node.planner.detections_pub is None and node.planner.collision_pub is None
        assert "vision_msgs is missing" in node.status_values()["detections_error"]
        assert "collision_objects_error" not in node.status_values()       # not asked for
    finally:
        node.destroy_node()


def test_an_object_no_semantic_label_named_is_unknown_not_void():
    from clusteringsdf_core.data.classes import SCANNET_REDUCED
    from clusteringsdf_core.online.extraction import ObjectsResult
    from clusteringsdf_ros.object_msgs import objects_to_msg

    tracked = _tracked_box(4)
    tracked.object.class_id = 0
    msg = objects_to_msg(ObjectsResult(seq=1, iteration=5, stamp_ns=0, objects=(tracked,), seconds=0.0),
                         SCANNET_REDUCED, "map")
    assert (msg.objects[0].class_id, msg.objects[0].class_name) == (0, "unknown")
    assert SCANNET_REDUCED.object_class_name(6) == SCANNET_REDUCED.name_of(6) == "chair"
