"""``/objects`` in the message types planners already consume.

- ``vision_msgs/Detection3DArray`` (``ros.detections_topic``): one ``Detection3D`` per
  object, ``id`` = the object id, one hypothesis (``class_id`` = the class name,
  ``score`` = the confidence, ``pose`` = the box pose) and ``bbox`` = the oriented box.
- ``moveit_msgs/CollisionObject`` (``ros.collision_objects_topic``, e.g. MoveIt's
  ``/collision_object``): ``id`` = ``clusteringsdf_<id>``, ``pose`` = the box pose, one
  mesh in that pose's frame (``mesh_poses`` = identity). ``ADD`` when an id appears or
  its shape changes (MoveIt replaces an object added again), ``MOVE`` when only its
  pose changed, ``REMOVE`` when it is gone; an unchanged object sends nothing.

Both build from the ``ObjectArray`` the node publishes, so they carry the same ids,
frame and (decimated) meshes. The message packages are imported when an output is
enabled; where one is not installed (the PyPI ROS wheels have neither) the node says
so once and reports it in ``~/status``. :class:`CollisionDiff` (which operation each
object needs) imports no ROS package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from clusteringsdf_ros import transforms as tfm

__all__ = ["objects_to_detections", "CollisionDiff", "collision_inputs", "collision_objects", "CollisionOp",
           "PlannerPublishers", "COLLISION_ID_PREFIX"]

#: Prefix of the MoveIt ids of our objects (other sources share the planning scene).
COLLISION_ID_PREFIX = "clusteringsdf_"
#: Pose changes below these count as unchanged (metres; radians of the quaternion angle).
MOVE_TOLERANCE_M = 1e-3
MOVE_TOLERANCE_RAD = 1e-3
#: Collision-object messages a late subscriber gets (transient local history).
COLLISION_HISTORY = 100


def objects_to_detections(objects_msg):
    """A ``vision_msgs/Detection3DArray`` of an ``ObjectArray``."""
    from geometry_msgs.msg import PoseWithCovariance
    from vision_msgs.msg import (BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesis,
                                 ObjectHypothesisWithPose)

    out = Detection3DArray(header=objects_msg.header)
    for o in objects_msg.objects:
        hypothesis = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=o.class_name, score=float(o.confidence)),
            pose=PoseWithCovariance(pose=o.bbox_pose))
        out.detections.append(Detection3D(header=objects_msg.header, results=[hypothesis],
                                          bbox=BoundingBox3D(center=o.bbox_pose, size=o.bbox_size),
                                          id=str(o.id)))
    return out


@dataclass(frozen=True)
class CollisionOp:
    """What one object needs: ``op`` is ``add``, ``move`` or ``remove``."""

    object_id: int
    op: str
    pose: np.ndarray | None = None         # 4x4 object pose in the map frame (add, move)
    vertices: np.ndarray | None = None     # (V, 3) in the object's frame (add)
    faces: np.ndarray | None = None        # (F, 3) (add)


@dataclass
class CollisionDiff:
    """The collision objects a planner was last sent, and the operations that bring it
    to a new set of objects."""

    _sent: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)   # id -> (shape key, pose)

    def update(self, objects: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> list[CollisionOp]:
        """``objects``: ``(id, pose 4x4, vertices in the map frame, faces)`` each. Returns the
        operations (by id; removals last) and remembers the new state."""
        ops, now = [], {}
        for object_id, pose, vertices, faces in sorted(objects, key=lambda o: o[0]):
            pose = np.asarray(pose, np.float64)
            local = (np.asarray(vertices, np.float64) - pose[:3, 3]) @ pose[:3, :3]   # R^T (v - t)
            faces = np.asarray(faces, np.int64).reshape(-1, 3)
            key = _shape_key(local, faces)
            now[object_id] = (key, pose)
            sent = self._sent.get(object_id)
            if sent is None or sent[0] != key:
                ops.append(CollisionOp(object_id, "add", pose, local, faces))
            elif _moved(sent[1], pose):
                ops.append(CollisionOp(object_id, "move", pose))
            else:
                now[object_id] = sent       # tolerance: compare later poses with the one sent
        ops += [CollisionOp(i, "remove") for i in sorted(set(self._sent) - set(now))]
        self._sent = now
        return ops

    def remove_all(self) -> list[CollisionOp]:
        """Operations that take every object sent out of the planning scene."""
        ops = [CollisionOp(i, "remove") for i in sorted(self._sent)]
        self._sent = {}
        return ops


def _shape_key(local: np.ndarray, faces: np.ndarray) -> str:
    digest = hashlib.sha1(np.round(local / MOVE_TOLERANCE_M).astype(np.int64).tobytes())
    digest.update(faces.tobytes())
    return digest.hexdigest()


def _moved(a: np.ndarray, b: np.ndarray) -> bool:
    if np.linalg.norm(a[:3, 3] - b[:3, 3]) > MOVE_TOLERANCE_M:
        return True
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0))) > MOVE_TOLERANCE_RAD


def collision_inputs(objects_msg) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """:meth:`CollisionDiff.update`'s input from an ``ObjectArray``."""
    out = []
    for o in objects_msg.objects:
        vertices = np.array([[p.x, p.y, p.z] for p in o.mesh.vertices], np.float64).reshape(-1, 3)
        faces = np.array([t.vertex_indices for t in o.mesh.triangles], np.int64).reshape(-1, 3)
        out.append((int(o.id), tfm.pose_to_matrix(o.bbox_pose), vertices, faces))
    return out


def collision_objects(ops: list[CollisionOp], header) -> list:
    """``moveit_msgs/CollisionObject`` messages of the operations (frame and stamp of ``header``)."""
    from geometry_msgs.msg import Pose
    from moveit_msgs.msg import CollisionObject

    from clusteringsdf_ros.object_msgs import mesh_to_msg

    kinds = {"add": CollisionObject.ADD, "move": CollisionObject.MOVE, "remove": CollisionObject.REMOVE}
    out = []
    for op in ops:
        msg = CollisionObject(header=header, id=f"{COLLISION_ID_PREFIX}{op.object_id}", operation=kinds[op.op])
        if op.pose is not None:
            msg.pose = tfm.matrix_to_pose(op.pose)
        if op.op == "add":
            msg.meshes = [mesh_to_msg(op.vertices, op.faces)]
            msg.mesh_poses = [Pose()]        # identity: the mesh is in the object's frame
        out.append(msg)
    return out


class PlannerPublishers:
    """The node's planner-facing publishers (those whose topic is set): built with the
    ``ObjectArray`` each time ``/objects`` is published. An output whose message package
    is missing is off, with the reason in :attr:`errors` (reported in ``~/status``)."""

    def __init__(self, node, *, detections_topic: str, collision_objects_topic: str):
        from clusteringsdf_ros.object_msgs import latched_qos

        self.errors: dict[str, str] = {}
        self.detections_pub = self.collision_pub = None
        self.diff = CollisionDiff()
        if detections_topic:
            try:
                from vision_msgs.msg import Detection3DArray
                self.detections_pub = node.create_publisher(Detection3DArray, detections_topic, latched_qos())
            except ImportError as exc:
                self.errors["detections"] = f"ros.detections_topic is set but vision_msgs is missing ({exc})"
        if collision_objects_topic:
            try:
                from moveit_msgs.msg import CollisionObject
                # Transient local with a history: a planner that starts later gets the
                # operations in order (an ADD, then the MOVE or REMOVE that followed).
                self.collision_pub = node.create_publisher(CollisionObject, collision_objects_topic,
                                                           latched_qos(COLLISION_HISTORY))
            except ImportError as exc:
                self.errors["collision_objects"] = (f"ros.collision_objects_topic is set but moveit_msgs is "
                                                    f"missing ({exc})")
        for message in self.errors.values():
            node.get_logger().error(f"{message}: that output is off")

    def publish(self, objects_msg) -> int:
        """Publish what ``objects_msg`` means for each enabled output; returns the number
        of collision-object operations sent."""
        if self.detections_pub is not None:
            self.detections_pub.publish(objects_to_detections(objects_msg))
        if self.collision_pub is None:
            return 0
        ops = self.diff.update(collision_inputs(objects_msg))
        for msg in collision_objects(ops, objects_msg.header):
            self.collision_pub.publish(msg)
        return len(ops)

    def remove_all(self, header) -> int:
        """Take every object sent out of the planning scene (after ``~/reset``)."""
        if self.collision_pub is None:
            return 0
        ops = self.diff.remove_all()
        for msg in collision_objects(ops, header):
            self.collision_pub.publish(msg)
        return len(ops)
