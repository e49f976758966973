"""launch_ros actions from :mod:`clusteringsdf_ros.launch_spec` (imported by launch/*.launch.py
only; needs launch_ros, which a real ROS 2 install has and the PyPI wheels lack)."""

from launch_ros.actions import Node

from clusteringsdf_ros.launch_spec import NodeSpec


def to_nodes(specs: list[NodeSpec]) -> list[Node]:
    return [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace or "",
                 parameters=[*s.parameter_files, *([s.parameters] if s.parameters else [])],
                 remappings=list(s.remappings), output="screen", emulate_tty=True)
            for s in specs]
