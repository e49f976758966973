"""The built messages travel through rclpy intact."""

import time

import numpy as np


def _make_object_array():
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point
    from shape_msgs.msg import Mesh, MeshTriangle

    from clusteringsdf_ros.msg import Object, ObjectArray

    msg = ObjectArray()
    msg.header.frame_id = "map"
    msg.header.stamp = Time(sec=12, nanosec=345)
    msg.iteration = 4321
    for k in range(3):
        obj = Object()
        obj.id = 10 + k
        obj.class_id = 5
        obj.class_name = "chair"
        obj.confidence = 0.75
        obj.centroid.x, obj.centroid.y, obj.centroid.z = 1.0 + k, -2.0, 0.5
        obj.bbox_pose.position.x = 1.0 + k
        obj.bbox_pose.orientation.z, obj.bbox_pose.orientation.w = np.sin(0.25), np.cos(0.25)
        obj.bbox_size.x, obj.bbox_size.y, obj.bbox_size.z = 0.5, 0.6, 0.9
        obj.volume = 0.27
        vertices = np.random.default_rng(k).normal(size=(50, 3))
        obj.mesh = Mesh(vertices=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in vertices],
                        triangles=[MeshTriangle(vertex_indices=[i, i + 1, i + 2]) for i in range(48)])
        obj.num_observations = 7 + k
        obj.first_seen = Time(sec=1)
        obj.last_updated = Time(sec=12, nanosec=345)
        msg.objects.append(obj)
    return msg


def test_object_array_round_trip_through_rclpy(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    from clusteringsdf_ros.msg import ObjectArray

    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    import rclpy

    pub_node = rclpy.create_node("test_objects_pub", context=ros_context)
    sub_node = rclpy.create_node("test_objects_sub", context=ros_context)
    received = []
    sub_node.create_subscription(ObjectArray, "/objects", received.append, qos)
    publisher = pub_node.create_publisher(ObjectArray, "/objects", qos)
    sent = _make_object_array()
    publisher.publish(sent)

    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    deadline = time.monotonic() + 20.0  # a failure bound for discovery, not a speed check
    while not received and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    pub_node.destroy_node()
    sub_node.destroy_node()

    assert received, "no ObjectArray arrived over DDS"
    got = received[0]
    assert got == sent  # generated messages compare field by field
    assert got.objects[2].id == 12 and got.objects[0].class_name == "chair"
    assert len(got.objects[1].mesh.vertices) == 50
    assert list(got.objects[1].mesh.triangles[3].vertex_indices) == [3, 4, 5]
    assert got.header.stamp.nanosec == 345 and got.iteration == 4321
