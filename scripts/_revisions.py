"""Another git revision of this repository, checked out beside it (for the scripts that
compare this checkout with it: step_speed.py, step_equality.py)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: First lines of a worker run with ``python -c`` in another tree (cwd = that tree):
#: the editable install of this checkout maps ``clusteringsdf_core.*`` modules that the
#: other tree lacks (e.g. a package added since) to this checkout's files, which would
#: mix the two trees; without its finder, every module comes from the other tree.
ISOLATE = r"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not (getattr(f, "__module__", "") or type(f).__module__).startswith("__editable__")]
"""


def short_rev(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


@contextlib.contextmanager
def worktree(rev: str):
    """A temporary git worktree of ``rev`` (detached), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="revision_") as tmp:
        other = Path(tmp) / short_rev(rev)
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), rev], cwd=ROOT, check=True)
        try:
            yield other
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
