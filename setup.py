"""pip install of the ROS-free core and the `clusteringsdf` command.

ROS users build the package with colcon (CMakeLists.txt); this file serves offline
use (`pip install -e .`) on machines with or without ROS, GPU machines included.
The `clusteringsdf_ros` Python package is installed by colcon only, next to its
generated messages.
"""

from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.split("#")[0].strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="clusteringsdf-ros",
    version="0.1.0",
    description="ClusteringSDF: object-level neural SDF scene reconstruction from "
                "view-inconsistent 2D instance labels (core library and CLI)",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["clusteringsdf_core", "clusteringsdf_core.*"]),
    package_data={"clusteringsdf_core": ["py.typed"]},
    install_requires=requirements,
    extras_require={"test": ["pytest>=8", "torchmetrics>=1.4"]},
    entry_points={"console_scripts": ["clusteringsdf = clusteringsdf_core.cli:main"]},
)
