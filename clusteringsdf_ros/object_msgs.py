"""Engine results -> ROS messages: the ``ObjectArray``, the RViz markers, the status."""

from __future__ import annotations

import numpy as np
from typing import Any, Mapping

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Vector3
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.online.extraction import ObjectsResult
from clusteringsdf_core.online.meshes import MAX_MESH_FACES, decimate_mesh
from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.msg import Object, ObjectArray

__all__ = ["objects_to_msg", "objects_to_markers", "status_to_diagnostics", "latched_qos", "mesh_to_msg"]


def latched_qos(depth: int = 1):
    """Reliable, transient local, keep the last ``depth``: what the object outputs use,
    so that a subscriber that starts later gets the newest messages at once."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _colour(object_id: int, alpha: float = 1.0) -> ColorRGBA:
    from clusteringsdf_core.viz import label_colours

    r, g, b = label_colours(np.array([object_id]))[0] / 255.0
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))


def mesh_to_msg(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """A ``shape_msgs/Mesh`` of (V, 3) vertices and (F, 3) faces."""
    return Mesh(vertices=_points(vertices),
                triangles=[MeshTriangle(vertex_indices=[int(a), int(b), int(c)]) for a, b, c in faces])


def _points(xyz: np.ndarray) -> list:
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(xyz, np.float64)]


def _ros_time(seconds: float):
    return tfm.s_to_stamp(max(0.0, float(seconds)))


def objects_to_msg(result: ObjectsResult, classes: ClassTable, map_frame: str, *,
                   max_faces: int = MAX_MESH_FACES) -> ObjectArray:
    """The ``ObjectArray`` of an extraction (every field filled; meshes decimated)."""
    msg = ObjectArray()
    msg.header.frame_id = map_frame
    msg.header.stamp = tfm.ns_to_stamp(result.stamp_ns)
    msg.iteration = int(result.iteration)
    for tracked in result.objects:
        o = tracked.object
        vertices, faces = decimate_mesh(o.mesh.vertices, o.mesh.faces, max_faces)
        item = Object()
        item.id = int(tracked.id)
        item.class_id = int(max(0, o.class_id))
        item.class_name = classes.object_class_name(int(o.class_id))
        item.confidence = float(np.clip(o.confidence, 0.0, 1.0))
        c = np.asarray(o.centroid, np.float64)
        item.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
        item.bbox_pose = tfm.matrix_to_pose(o.box_pose)
        s = np.asarray(o.box_size, np.float64)
        item.bbox_size = Vector3(x=float(s[0]), y=float(s[1]), z=float(s[2]))
        item.volume = float(o.volume)
        item.mesh = mesh_to_msg(vertices, faces)
        item.watertight = bool(o.watertight)
        item.num_observations = int(tracked.num_observations)
        item.first_seen = _ros_time(tracked.first_seen)
        item.last_updated = _ros_time(tracked.last_updated)
        msg.objects.append(item)
    return msg


_BOX_EDGES = np.array([[0, 1], [1, 3], [3, 2], [2, 0], [4, 5], [5, 7], [7, 6], [6, 4],
                       [0, 4], [1, 5], [2, 6], [3, 7]])


def objects_signature(result: ObjectsResult) -> tuple:
    """What a planner sees of an extraction, to publish only what changed: per object
    its id, its box (to the millimetre), class, confidence (to 0.01) and observations.
    (Not the stamps: with ``use_sim_time`` they stop when the bag does.)"""
    return tuple((t.id, tuple(np.round(np.asarray(t.object.aabb, float), 3).ravel().tolist()),
                  t.object.class_id, round(float(t.object.confidence), 2), t.num_observations)
                 for t in result.objects)


def objects_to_markers(msg: ObjectArray) -> MarkerArray:
    """RViz markers of an ``ObjectArray``: DELETEALL, then per object a TRIANGLE_LIST mesh
    coloured by id (namespace ``mesh``), a LINE_LIST box (``box``) and a
    TEXT_VIEW_FACING label (``label``), marker id = object id."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=msg.header, action=Marker.DELETEALL))
    forever = Duration(sec=0, nanosec=0)
    for obj in msg.objects:
        colour = _colour(obj.id)
        mesh = Marker(header=msg.header, ns="mesh", id=int(obj.id), type=Marker.TRIANGLE_LIST,
                      action=Marker.ADD, lifetime=forever, color=colour)
        mesh.pose.orientation.w = 1.0
        mesh.scale = Vector3(x=1.0, y=1.0, z=1.0)
        mesh.points = [obj.mesh.vertices[i] for tri in obj.mesh.triangles for i in tri.vertex_indices]
        box = Marker(header=msg.header, ns="box", id=int(obj.id), type=Marker.LINE_LIST,
                     action=Marker.ADD, lifetime=forever, color=colour, pose=obj.bbox_pose)
        box.scale.x = 0.02
        half = np.array([obj.bbox_size.x, obj.bbox_size.y, obj.bbox_size.z]) / 2.0
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
        box.points = _points(corners[_BOX_EDGES.reshape(-1)])
        label = Marker(header=msg.header, ns="label", id=int(obj.id), type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, lifetime=forever,
                       color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label.pose = tfm.matrix_to_pose(np.eye(4))
        label.pose.position = Point(x=obj.bbox_pose.position.x, y=obj.bbox_pose.position.y,
                                    z=obj.bbox_pose.position.z + half[2] + 0.1)
        label.scale.z = 0.15
        label.text = f"{obj.id}: {obj.class_name} ({obj.confidence:.2f})"
        markers.markers.extend([mesh, box, label])
    return markers



def status_to_diagnostics(name: str, hardware_id: str, values: Mapping[str, Any]) -> DiagnosticArray:
    """One DiagnosticStatus of the mapping node's status values (header stamp left to the
    caller): OK while training, WARN after errors or in any other state."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    if values["trainer_errors"]:
        status.level, status.message = DiagnosticStatus.WARN, "training (errors occurred)"
    elif values["state"] == "training":
        status.level, status.message = DiagnosticStatus.OK, "training"
    else:
        status.level, status.message = DiagnosticStatus.WARN, str(values["state"])
    status.values = [KeyValue(key=k, value=(f"{v:.6g}" if isinstance(v, float) else str(v)))
                     for k, v in values.items()]
    return DiagnosticArray(status=[status])
