#!/usr/bin/env python3
"""Training steps per second of this checkout against another revision, side by side.

    scripts/env.sh python scripts/step_speed.py --against HEAD~1 --scene DIR [--preset cpu]

Checks the other revision out into a temporary git worktree, then runs the same
measurement in a fresh process for each tree in turn (A B A B ...), ``--rounds`` times:
a trainer on the scene's training views (labels simulated with the realistic preset,
label seed 0), ``--warmup`` steps, then ``--steps`` timed steps. Alternating rounds
share whatever else the machine is doing, so the per-round ratio is the number to
read; absolute rates are context. Prints one line per round and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _revisions import ISOLATE, ROOT, short_rev, worktree

_WORKER = ISOLATE + r"""
import json, sys, time
import torch
from clusteringsdf_core.data import segmenter_sim
try:
    from clusteringsdf_core.data.formats import open_dataset
except ImportError:                     # a revision before data/formats
    from clusteringsdf_core.data.readers import open_dataset
from clusteringsdf_core.presets import preset
try:
    from clusteringsdf_core.training import Trainer
except ImportError:                     # a revision before the training package
    from clusteringsdf_core.trainer import Trainer
scene, name, device, threads, warmup, steps = sys.argv[1:7]
if int(threads):
    torch.set_num_threads(int(threads))
ds = open_dataset(scene)
ds.train = segmenter_sim.simulate_dataset(list(ds.train), segmenter_sim.preset("realistic"), seed=0)
trainer = Trainer.from_dataset(ds, preset(name).merged({"trainer": {"progress_bar": False, "device": device}}))
sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
for _ in range(int(warmup)):
    trainer.step()
sync()
started = time.perf_counter()
for _ in range(int(steps)):
    trainer.step()
sync()
print(json.dumps({"it_per_s": int(steps) / (time.perf_counter() - started)}))
"""


def _measure(tree: Path, args) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _WORKER, str(args.scene), args.preset, args.device,
                          str(args.threads), str(args.warmup), str(args.steps)],
                         env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measurement in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["it_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="git revision to compare this checkout with")
    parser.add_argument("--scene", required=True, type=Path, help="scene folder (any format the readers open)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rev = short_rev(args.against)
    with worktree(args.against) as other:
        ratios = []
        print(f"{'round':>5}  {rev + ' it/s':>12}  {'this it/s':>10}  ratio")
        for r in range(args.rounds):
            before, now = _measure(other, args), _measure(ROOT, args)
            ratios.append(now / before)
            print(f"{r + 1:>5}  {before:>12.2f}  {now:>10.2f}  {now / before:.2f}", flush=True)
        print(f"median ratio (this / {rev}): {statistics.median(ratios):.2f} over {args.rounds} rounds "
              f"({args.preset} preset, {args.device}, {args.threads or 'default'} threads, {args.steps} steps)")

if __name__ == "__main__":
    main()
