#!/usr/bin/env python3
"""Whether this checkout trains exactly like another revision: the loss terms of the
same training steps, compared to the last bit.

    scripts/env.sh python scripts/step_equality.py --against REV [--preset cpu] [--mode offline]

For refactors that must not change what the trainer computes. Checks the other
revision out into a temporary git worktree, then runs the same steps in a fresh
process for each tree: a 64x48 procedural room (three objects, six training views,
realistic simulated labels, label seed 0), 4 steps from the start, then 5 steps at
iteration 900 of 1000 (every late loss term on), and the channel classes.
``--mode online`` feeds the views with ``add_frame`` (two steps after each) and grows
the map before the late steps; ``--mode semantic`` trains in semantic mode with
L_cross_view. Prints the terms that differ (none: "bitwise equal") and exits 1 when
any does. Some configurations are not reproducible even against themselves (the
paper preset on CPU differs by ~1e-7 between two runs of one tree): ``--self`` runs
this checkout twice instead, to see that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _revisions import ISOLATE, ROOT, short_rev, worktree

_WORKER = ISOLATE + r"""
import json, sys
import numpy as np
import torch
from clusteringsdf_core.data import segmenter_sim
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.presets import preset
try:
    from clusteringsdf_core.training import Trainer
except ImportError:                     # a revision before the training package
    from clusteringsdf_core.trainer import Trainer
name, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
scene = generate_scene(SyntheticSceneConfig(seed=1, furniture="procedural", width=64, height=48, num_train=6,
                                            num_test=1, num_objects=3, num_small_objects=0))
ds = scene.dataset
ds.train = segmenter_sim.simulate_dataset(ds.train, segmenter_sim.preset("realistic"), seed=0)
over = {"trainer": {"progress_bar": False, "device": "cpu", "iterations": 1000, "num_threads": threads}}
if mode == "semantic":
    over["trainer"]["mode"] = "semantic"
    over.update({"model": {"num_channels": max(24, len(ds.classes))}, "loss": {"lambda_cross_view": 1.0},
                 "sampling": {"cross_view_views": 2}})
if mode == "online":
    over["keyframes"] = {"min_translation_m": 0.0, "min_rotation_deg": 0.0}
cfg = preset(name).merged(over)
out = []
def step(trainer):
    out.append({k: float(v) for k, v in trainer.step().items()})
if mode == "online":
    bounds = np.asarray(ds.bounds, float)
    trainer = Trainer(cfg, bounds * 0.8, classes=ds.classes)
    for frame in ds.train:
        trainer.add_frame(frame)
        step(trainer)
        step(trainer)
    trainer.grow(bounds * 1.1)
    step(trainer)
else:
    trainer = Trainer.from_dataset(ds, cfg)
    for _ in range(4):
        step(trainer)
trainer.iteration, trainer.schedule_iteration = 900, 900.0
for _ in range(5):
    step(trainer)
classes, confidence = trainer.channel_classes()
out.append({"classes": [int(c) for c in classes], "confidence": [float(c) for c in confidence]})
import inspect
print(json.dumps({"records": out, "trainer_file": inspect.getfile(Trainer)}))
"""


def _run(tree: Path, args) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _WORKER, args.preset, args.mode, str(args.threads)],
                         env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the steps in {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["trainer_file"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the steps for {tree} ran {result['trainer_file']}, not that tree's trainer")
    return result["records"]


def compare(a: list[dict], b: list[dict]) -> list[str]:
    """Lines naming each (step, term) whose values differ, with both values."""
    lines = []
    if len(a) != len(b):
        lines.append(f"{len(a)} records against {len(b)}")
    for i, (x, y) in enumerate(zip(a, b)):
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                lines.append(f"step {i} {key}: {x.get(key)} | {y.get(key)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--against", help="git revision to compare this checkout with")
    which.add_argument("--self", action="store_true", help="run this checkout twice (reproducibility floor)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--mode", choices=("offline", "online", "semantic"), default="offline")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    if args.self:
        label, a = "this checkout (second run)", _run(ROOT, args)
    else:
        label = short_rev(args.against)
        with worktree(args.against) as other:
            a = _run(other, args)
    b = _run(ROOT, args)
    diff = compare(a, b)
    what = f"{args.preset} preset, {args.mode}"
    if not diff:
        print(f"bitwise equal to {label} ({what}: {len(b) - 1} steps and the channel classes)")
        return 0
    print(f"{len(diff)} differences from {label} ({what}; theirs | ours):")
    print("\n".join(diff[:40]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
