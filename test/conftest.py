"""Test-wide settings: DDS stays on this machine and each run has its own domain.

These must be in the environment before any test calls ``rclpy.init()``:
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps discovery on loopback (Kilted
  ignores ROS_LOCALHOST_ONLY);
- a per-run ROS_DOMAIN_ID keeps concurrent runs apart;
- the Fast DDS profile gives shared memory segments large enough for images and
  binds UDP to 127.0.0.1.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_loopback.xml")
os.environ.pop("ROS_LOCALHOST_ONLY", None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def _ros_missing() -> str | None:
    try:
        import rclpy  # noqa: F401
        from clusteringsdf_ros.msg import ObjectArray  # noqa: F401
    except ImportError as exc:
        return f"rclpy or the built clusteringsdf_ros messages are not importable ({exc})"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests under test/ros/ and those marked ``ros`` need rclpy and the built messages.

    Under `make test` (CLUSTERINGSDF_REQUIRE_ROS=1) a missing ROS install is an
    error, so a broken build never passes as "skipped". Elsewhere (a GPU machine
    with torch and no ROS) those tests are skipped with the reason.
    """
    needs_ros = [item for item in items
                 if "ros" in item.keywords or (REPO / "test" / "ros") in Path(item.fspath).parents]
    if not needs_ros:
        return
    missing = _ros_missing()
    if not missing:
        return
    if os.environ.get("CLUSTERINGSDF_REQUIRE_ROS") == "1":
        raise pytest.UsageError(f"CLUSTERINGSDF_REQUIRE_ROS=1 but {missing}; run `make setup`")
    skip = pytest.mark.skip(reason=missing)
    for item in needs_ros:
        item.add_marker(skip)


def _torch_devices():
    """``cpu``, and ``cuda`` (skipped with the reason where there is no CUDA device)."""
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    return ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
        not cuda, reason="no CUDA device on this machine (scripts/gpu_check.sh runs these on one)"))]


@pytest.fixture(params=_torch_devices())
def torch_device(request) -> str:
    """A test that takes ``torch_device`` runs once per torch device (cpu, cuda)."""
    return request.param
