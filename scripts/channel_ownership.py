#!/usr/bin/env python3
"""Which channel owns each GT object while ClusteringSDF trains (offline, or streamed
through the online engine with ``--online``), and when objects come to share one.

Trains the given preset on a scene with GT instance maps (simulated realistic machine
labels, like the bench) and, every ``--every`` iterations, renders a few test views at
a reduced size and prints, per GT object, the channel that holds most of its pixels
(with that share) and the groups of objects that share a channel. docs/ONLINE.md
("Why objects share channels") shows what it found.

    scripts/env.sh python scripts/channel_ownership.py SCENE_DIR [--label-seed 0]
        [--every 300] [--views 5] [--set model.init_offset_slope=0.6 ...]
        [--online [--per-frame 18.75]]

``--online`` feeds the training frames to a ``MappingEngine`` in recording order, as the
bench's ``clusteringsdf_online`` does (bounds from the first frames, growing map,
``--per-frame`` iterations after each frame, default half the budget over the frames),
then trains to the budget; each report also gives the frames streamed so far.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusteringsdf_core.bench.protocols import with_labels  # noqa: E402
from clusteringsdf_core.data.formats import open_dataset  # noqa: E402
from clusteringsdf_core.evaluation import NeuralLabelRenderer  # noqa: E402
from clusteringsdf_core.online import MappingEngine  # noqa: E402
from clusteringsdf_core.pipeline import build_config  # noqa: E402
from clusteringsdf_core.training import Trainer  # noqa: E402


def ownership(trainer: Trainer, views, classes, size) -> tuple[list[str], dict[int, list[int]]]:
    """Per GT object 'id:chK(share)', and channel -> GT objects for shared channels."""
    renderer = NeuralLabelRenderer(trainer.snapshot(), classes, resolution=size)
    pixels: dict[int, list[np.ndarray]] = {}
    for frame in views:
        _, channel = renderer(frame)
        gt = cv2.resize(frame.gt_instance.astype(np.int32), channel.shape[::-1],
                        interpolation=cv2.INTER_NEAREST)
        for obj in np.unique(gt):
            if obj > 0:
                pixels.setdefault(int(obj), []).append(channel[gt == obj])
    cells, owners = [], {}
    for obj in sorted(pixels):
        counts = np.bincount(np.concatenate(pixels[obj]))
        k = int(counts.argmax())
        owners.setdefault(k, []).append(obj)
        cells.append(f"{obj}:ch{k}({counts[k] / counts.sum():.2f})")
    return cells, {k: v for k, v in owners.items() if len(v) > 1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", help="a scene folder with GT instance maps")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--label-seed", type=int, default=0, help="seed of the simulated labels and of training")
    ap.add_argument("--every", type=int, default=300, help="iterations between reports")
    ap.add_argument("--iterations", type=int, default=None, help="training iterations (default: the preset's)")
    ap.add_argument("--views", type=int, default=5, help="test views rendered per report")
    ap.add_argument("--scale", type=float, default=0.5, help="render size relative to the test images")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--online", action="store_true", help="stream the frames through the online engine")
    ap.add_argument("--per-frame", type=float, default=None,
                    help="--online: iterations after each frame (default: half the budget over the frames)")
    args = ap.parse_args(argv)

    dataset = with_labels(open_dataset(args.scene, labels=None), "realistic", args.label_seed)
    # as the bench trains: the label seed is the training seed; --set comes last
    sets = [f"trainer.seed={args.label_seed}"] + (
        [f"trainer.iterations={args.iterations}"] if args.iterations else []) + args.set
    config = build_config(args.preset, None, sets)
    test = list(dataset.test) or list(dataset.train)
    views = test[:: max(1, len(test) // args.views)][: args.views]
    size = (max(8, round(views[0].width * args.scale)), max(8, round(views[0].height * args.scale)))
    started = time.perf_counter()
    total = config.trainer.iterations
    frames_seen = [len(dataset.train)]

    def report(t: Trainer) -> None:
        if t.iteration % args.every and t.iteration != 50 and t.iteration != total:
            return
        cells, shared = ownership(t, views, dataset.classes, size)
        print(f"it {t.iteration:6d} {time.perf_counter() - started:6.0f} s frames {frames_seen[0]:3d} beta "
              f"{t.last_losses.get('beta', float('nan')):.4f}  " + " ".join(cells)
              + f"  shared {shared or '-'}", flush=True)

    if not args.online:
        Trainer.from_dataset(dataset, config).fit(progress=False, callback=report)
        return 0
    frames = list(dataset.train)
    per_frame = args.per_frame if args.per_frame is not None else 0.5 * total / len(frames)
    engine = MappingEngine(config, classes=dataset.classes, queue_size=len(frames) + 1)

    def steps(n: int) -> None:
        for _ in range(n):
            if engine.trainer is None or engine.trainer.iteration >= total:
                return
            engine.train(1)
            report(engine.trainer)

    credit = 0.0
    for i, frame in enumerate(frames, start=1):
        frames_seen[0] = i
        engine.put(frame)
        engine.ingest()
        credit += per_frame
        steps(int(credit))
        credit -= int(credit)
    engine.bootstrap_now()
    steps(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
