#!/usr/bin/env bash
# Run a command in the project's environment (made by scripts/setup.sh):
# the venv, the colcon install (messages, ament index, launch/config share),
# and the repository's sources ahead of the installed copies on PYTHONPATH,
# so that edits are picked up without a rebuild.
#   scripts/env.sh clusteringsdf --help
#   scripts/env.sh python -m pytest test/core
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$ROOT/.venv/bin/python" ] || [ ! -f "$ROOT/install/setup.sh" ]; then
  echo "scripts/env.sh: the environment is not set up; run 'make setup' first" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$ROOT/.venv/bin/activate"
export AMENT_PREFIX_PATH="$ROOT/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
COLCON_CURRENT_PREFIX="$ROOT/install" . "$ROOT/install/setup.sh"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$@"
