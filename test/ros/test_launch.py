"""Launch descriptions: one node description for ros2 launch and the fallback runner."""

import sys
from pathlib import Path

import pytest

from clusteringsdf_ros.launch_fallback import command, specs_from_args, _parser
from clusteringsdf_ros.launch_spec import mapping_nodes, replay_nodes, ros_args

REPO = Path(__file__).resolve().parents[2]


def test_mapping_spec_arguments():
    (spec,) = mapping_nodes("/cfg/mapping.yaml", namespace="robot1", pose_source="odometry",
                            topics={"color_topic": "/cam/rgb", "depth_topic": "depth/image_raw"})
    args = ros_args(spec)
    assert args[:3] == ["--ros-args", "-r", "__node:=mapping_node"]
    assert "__ns:=/robot1" in args and args[args.index("--params-file") + 1] == "/cfg/mapping.yaml"
    assert "ros.pose_source:=odometry" in args
    assert "color/image_raw:=/cam/rgb" in args
    assert not any(a.startswith("depth/image_raw:=") for a in args)   # unchanged topics are not remapped


def test_replay_uses_the_pose_topic_and_passes_player_parameters():
    player, mapper = replay_nodes("~/bags/scene0", "/cfg/mapping.yaml", rate=2.0, loop=True)
    p_args, m_args = ros_args(player), ros_args(mapper)
    assert "rate:=2.0" in p_args and "loop:=true" in p_args
    assert any(a.startswith("bag_path:=") and "~" not in a for a in p_args)
    assert "ros.pose_source:=pose_topic" in m_args


def test_replay_with_the_segmenter_plays_only_the_sensor_topics():
    player, mapper, segmenter = replay_nodes("/b", "/cfg/mapping.yaml", use_segmenter=True)
    assert segmenter.executable == "segmenter_node"
    assert player.parameters["topics"] == ["/color/image_raw", "/color/camera_info", "/depth/image_raw",
                                           "/camera/pose", "/tf", "/tf_static"]
    assert mapper.parameters["ros.semantic_topic"] == "segmentation/semantic"   # the detector's classes
    assert segmenter.parameters["use_sim_time"] is True and mapper.parameters["use_sim_time"] is True
    _, plain = replay_nodes("/b", "/cfg/mapping.yaml")
    assert plain.parameters["ros.semantic_topic"] == "segmentation/semantic"
    args = _parser().parse_args(["replay", "--bag", "/b", "--config-file", "/c.yaml", "--use-segmenter"])
    assert [s.executable for s in specs_from_args(args)] == ["bag_player", "mapping_node", "segmenter_node"]


def test_fallback_builds_the_same_processes(monkeypatch, tmp_path):
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    args = _parser().parse_args(["replay", "--bag", "/b", "--config-file", "/c.yaml"])
    player, mapper = specs_from_args(args)
    assert command(mapper)[:3] == [sys.executable, "-m", "clusteringsdf_ros.mapping_node"]
    exe = tmp_path / "lib" / "clusteringsdf_ros" / "bag_player"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/usr/bin/env python3\n")
    exe.chmod(0o755)
    cmd = command(player)
    assert cmd[1] == str(exe) and cmd[2:] == ros_args(player)


def test_launch_files_build_their_nodes():
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; real ROS installs test this")
    import importlib.util

    for name in ("mapping.launch.py", "replay.launch.py"):
        spec = importlib.util.spec_from_file_location(name, REPO / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities


def test_rviz_config_shows_the_map_frame_and_the_mapping_node_topics(ros_context):
    import yaml

    from clusteringsdf_ros.mapping_node import MappingNode
    from rclpy.parameter import Parameter

    config = yaml.safe_load((REPO / "config" / "clusteringsdf.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    assert manager["Views"]["Current"]["Class"] == "rviz_default_plugins/Orbit"
    assert {p["Class"] for p in config["Panels"]} >= {"rviz_common/Displays", "rviz_common/Views"}
    displays = {d["Class"]: d for d in manager["Displays"] if d["Class"] != "rviz_default_plugins/Image"}
    assert {"rviz_default_plugins/Grid", "rviz_default_plugins/TF"} <= set(displays)
    images = [d["Topic"]["Value"] for d in manager["Displays"]
              if d["Class"] == "rviz_default_plugins/Image"]
    markers = displays["rviz_default_plugins/MarkerArray"]["Topic"]
    # The topics as a mapping node in the root namespace names them (latched markers).
    node = MappingNode(context=ros_context, parameter_overrides=[
        Parameter("ros.save_on_shutdown", value=False), Parameter("ros.pose_source", value="pose_topic")])
    try:
        assert markers["Value"] == node.markers_pub.topic_name == "/mapping_node/markers"
        assert markers["Durability Policy"] == "Transient Local"
        inputs = {sub.topic_name for sub in node.subscriptions}
        assert images == ["/color/image_raw", "/segmentation/instance"]
        assert set(images) <= inputs
        assert node.ros.map_frame == "map"
    finally:
        node.destroy_node()
