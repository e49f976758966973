"""Fixtures of the ROS tests."""

import pytest


@pytest.fixture
def ros_context():
    """A private rclpy context (DDS settings come from test/conftest.py), shut down after."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)
