#!/usr/bin/env python3
"""Mend the exported CMake files of the ROS 2 Kilted PyPI wheels inside a venv.

About 15 ``share/*/cmake/*.cmake`` files of those wheels point at the wheel build
machine's Python headers (``/opt/python/cp311-cp311/include/python3.11``) and NumPy
headers (``.../site-packages/numpy/_core/include``). Building messages against them
fails, so both paths are rewritten to this venv's. Idempotent.

Usage: fix_ros_wheels.py VENV
"""

import os
import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"
WRONG_NUMPY = f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include"
WRONG_PYTHON = f"{BUILD_PREFIX}/include/python3.11"


def main(venv: Path) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = os.path.realpath(numpy.get_include())
    fixed = 0
    for cmake_file in sorted((venv / "share").glob("*/cmake/*.cmake")):
        text = cmake_file.read_text()
        if BUILD_PREFIX not in text:
            continue
        new = text.replace(WRONG_NUMPY, numpy_include).replace(WRONG_PYTHON, python_include)
        if new != text:
            cmake_file.write_text(new)
            fixed += 1
    print(f"[setup] mended {fixed} exported CMake files of the ROS wheels "
          f"(python include: {python_include}, numpy include: {numpy_include})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
