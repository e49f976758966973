#!/usr/bin/env python3
"""Where a training step's time goes: steps per second, then the profiler's top operators.

    scripts/env.sh python scripts/step_profile.py --scene DIR [--preset gpu] [--device cuda]

A trainer on the scene's training views (labels simulated with the realistic preset,
label seed 0) runs ``--warmup`` steps, then ``--steps`` timed steps (synchronised on
CUDA), then ``--profile-steps`` steps under ``torch.profiler``; prints the rate and the
operators that took the most time on the device (CUDA time on a GPU, CPU time
otherwise), ``--rows`` of them, and the step's peak memory on CUDA.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", required=True, help="scene folder (any format the readers open)")
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()

    from clusteringsdf_core.data import segmenter_sim
    from clusteringsdf_core.data.formats import open_dataset
    from clusteringsdf_core.presets import preset
    from clusteringsdf_core.training import Trainer

    dataset = open_dataset(args.scene)
    dataset.train = segmenter_sim.simulate_dataset(list(dataset.train), segmenter_sim.preset("realistic"), seed=0)
    config = preset(args.preset).merged({"trainer": {"progress_bar": False, "device": args.device}})
    trainer = Trainer.from_dataset(dataset, config)
    cuda = trainer.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        trainer.step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.step()
    sync()
    seconds = time.perf_counter() - started
    print(f"{args.preset} preset on {trainer.device}: {args.steps / seconds:.1f} it/s "
          f"({1000 * seconds / args.steps:.1f} ms per step after {args.warmup} warm-up steps)"
          + (f", peak {torch.cuda.max_memory_allocated(trainer.device) / 2 ** 20:.0f} MiB" if cuda else ""))

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            trainer.step()
        sync()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"\n{args.profile_steps} profiled steps, operators by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
