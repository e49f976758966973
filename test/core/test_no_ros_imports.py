"""clusteringsdf_core must run where ROS is absent: it never imports ROS."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import clusteringsdf_core

CORE = Path(clusteringsdf_core.__file__).resolve().parent
ROS_MODULES = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "cv_bridge", "tf2_ros", "tf2_py",
               "message_filters", "launch", "launch_ros", "ament_index_python", "rosbag2_py",
               "tf_transformations", "clusteringsdf_ros")


def _is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_MODULES or top.endswith("_msgs") or top.endswith("_srvs")


def test_no_ros_import_statement_anywhere_in_core():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(CORE)}:{node.lineno} imports {n}" for n in names if _is_ros(n)]
    assert not offenders, "\n".join(offenders)


def test_importing_every_core_module_loads_no_ros_module():
    code = """
import importlib, json, pkgutil, sys
import clusteringsdf_core
for info in pkgutil.walk_packages(clusteringsdf_core.__path__, "clusteringsdf_core."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "clusteringsdf_core.config" in loaded  # the walk really imported the package
    assert [m for m in loaded if _is_ros(m)] == []


def test_the_checker_recognises_ros_modules():
    assert _is_ros("rclpy.node") and _is_ros("sensor_msgs.msg") and _is_ros("std_srvs")
    assert _is_ros("clusteringsdf_ros.msg")
    assert not _is_ros("numpy") and not _is_ros("torch") and not _is_ros("rosbags.typesys")
