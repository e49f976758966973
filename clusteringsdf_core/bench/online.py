"""``clusteringsdf_online``: ClusteringSDF through the online engine, as robots run it.

The scene's training frames go to a :class:`~clusteringsdf_core.online.MappingEngine`
one by one in recording order (the bounds come from the first frames' depth, the
key-frame buffer decides what is kept, channel seeds follow the frames), then training
goes on after the last frame until the preset's ``trainer.iterations``: the same
iteration budget as the offline ``clusteringsdf``, and the same extraction, metrics
and views for the score. Iterations that would fall before the model exists (the
bootstrap frames) are spent after the stream instead, so the budget stays equal.

The pace, under ``config.stream`` of the method's options (``--set
clusteringsdf_online.stream.iterations_per_frame=20``):

- ``iterations_per_frame``: training steps after each frame (deterministic, the same
  on any CPU); default: ``stream_share`` of the budget spread over the frames;
- ``stream_share`` (0.5): the share of the budget trained while frames arrive;
- ``frames_per_second``: instead, a wall-clock stream into the engine's own threads
  (the node's path; the result depends on the machine's speed; the engine's own
  periodic extractions, every ``MappingEngine.extract_period_s``, find the first object;
  ``--eval-at`` is not recorded in this mode);
- ``extract_every`` (250): iterations between the periodic extractions that find the
  first object and check id stability (their time is not counted as training time);
- ``known_bounds`` (false): give the engine the dataset's bounds instead of estimating
  them from the stream;
- ``grow_map`` (true): with estimated bounds, let the map grow when frames see past it
  (``MappingEngine(grow_map=...)``).

``meta`` reports ``first_object_iteration`` / ``first_object_frames`` /
``first_object_s`` (the first periodic extraction with a published object), the ids
of the last two periodic extractions and the engine's counters.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from clusteringsdf_core.bench.methods import Method, register_method
from clusteringsdf_core.bench.neural import _curve_point, peak_memory_mib, reset_peak_memory, variant_config
from clusteringsdf_core.bench.prediction import ScenePrediction

__all__ = ["stream_and_predict", "STREAM_DEFAULTS"]

#: The stream options and their defaults (module docstring).
STREAM_DEFAULTS: dict[str, Any] = {"iterations_per_frame": None, "stream_share": 0.5,
                                   "frames_per_second": None, "extract_every": 250,
                                   "known_bounds": False, "grow_map": True}


def _stream_options(overrides: dict) -> dict:
    stream = dict(overrides.pop("stream", None) or {})
    unknown = sorted(set(stream) - set(STREAM_DEFAULTS))
    if unknown:
        raise ValueError(f"clusteringsdf_online: unknown stream option(s) {unknown}; "
                         f"known: {sorted(STREAM_DEFAULTS)}")
    return {**STREAM_DEFAULTS, **stream}


class _Watch:
    """Periodic extractions, eval-at snapshots and the first object of one run."""

    def __init__(self, engine, eval_at, extract_every: int, started: float):
        self.engine, self.eval_at, self.extract_every = engine, eval_at, int(extract_every)
        self.started = started
        self.kept: list[tuple[float, object]] = []
        self.self_s = 0.0                 # time spent extracting (not training)
        self.next_extract = self.extract_every
        self.first: dict[str, Any] | None = None
        self.ids: list[tuple[int, ...]] = []

    def train_s(self) -> float:
        return time.perf_counter() - self.started - self.self_s

    def after_step(self, trainer, frames_seen: int) -> None:
        it = trainer.iteration
        if len(self.kept) < len(self.eval_at) and it >= self.eval_at[len(self.kept)]:
            t0 = time.perf_counter()
            self.kept.append((self.train_s(), trainer.snapshot()))
            self.self_s += time.perf_counter() - t0
        if self.extract_every > 0 and it >= self.next_extract:
            self.next_extract = it + self.extract_every
            t0 = time.perf_counter()
            result = self.engine.extract(live=True, confirm_new=False)
            self.self_s += time.perf_counter() - t0
            self.ids.append(tuple(t.id for t in result.objects))
            if self.first is None and result.objects:
                self.first = {"first_object_iteration": it, "first_object_frames": frames_seen,
                              "first_object_s": self.train_s()}


def _train_steps(engine, watch: _Watch, steps: int, frames_seen: int) -> None:
    for _ in range(int(steps)):
        trainer = engine.trainer
        if trainer is None or not trainer.views:
            return
        engine.train(1)
        watch.after_step(trainer, frames_seen)


def stream_and_predict(dataset, options: Mapping[str, Any], name: str = "clusteringsdf_online"
                       ) -> ScenePrediction:
    """Stream ``dataset``'s training frames into the engine and wrap the model as a
    prediction (module docstring). ``options`` as for the offline method."""
    from clusteringsdf_core.evaluation import model_prediction
    from clusteringsdf_core.online import MappingEngine
    from clusteringsdf_core.training import resolve_device

    overrides = dict(options.get("config") or {})
    stream = _stream_options(overrides)
    config = variant_config("clusteringsdf", overrides, seed=options.get("seed"))
    if options.get("device"):
        config = config.merged({"trainer.device": str(options["device"])})
    frames = list(dataset.train)
    total = config.trainer.iterations
    per_frame = stream["iterations_per_frame"]
    if per_frame is None:
        per_frame = stream["stream_share"] * total / max(1, len(frames))
    eval_at = sorted({int(i) for i in options.get("eval_at") or () if 0 < int(i) < total})
    progress = options.get("progress")
    engine = MappingEngine(config, classes=dataset.classes,
                           bounds_m=dataset.bounds if stream["known_bounds"] else None,
                           queue_size=len(frames) + 1, grow_map=bool(stream["grow_map"]))
    reset_peak_memory(resolve_device(config.trainer.device))
    started = time.perf_counter()
    watch = _Watch(engine, eval_at, stream["extract_every"], started)
    stream_iterations = None
    if stream["frames_per_second"]:
        _stream_wall_clock(engine, frames, float(stream["frames_per_second"]), total, watch, progress)
    else:
        credit = 0.0
        for i, frame in enumerate(frames, start=1):
            engine.put(frame)
            engine.ingest()
            credit += per_frame
            steps, credit = int(credit), credit - int(credit)
            _train_steps(engine, watch, min(steps, total - _iteration(engine)), i)
            if progress is not None:
                progress(_iteration(engine) / max(total, 1), f"{name} frame {i}/{len(frames)}")
        engine.bootstrap_now()            # a stream shorter than the bootstrap frames
        stream_iterations = _iteration(engine)
        while _iteration(engine) < total:
            _train_steps(engine, watch, min(50, total - _iteration(engine)), len(frames))
            if progress is not None:
                progress(_iteration(engine) / max(total, 1), f"{name} it {_iteration(engine)}")
    trainer = engine.trainer
    if trainer is None:
        raise RuntimeError(f"{name}: the stream of {len(frames)} frames never created a model")
    train_s = watch.train_s()
    prediction = model_prediction(trainer.snapshot(), dataset.classes, method=name, device=trainer.device)
    prediction.meta.update({
        "train_s": train_s, "iterations": trainer.iteration,
        "iterations_per_s": trainer.iteration / max(train_s, 1e-9), "device": str(trainer.device),
        "losses": trainer.last_losses, "frames": len(frames), "views": len(trainer.views),
        "peak_gpu_mib": peak_memory_mib(trainer.device),
        "iterations_per_frame": per_frame if not stream["frames_per_second"] else None,
        "frames_per_second": stream["frames_per_second"],
        "stream_iterations": stream_iterations,
        "bounds_m": engine.stats().get("bounds_m"), "counters": engine.counters.snapshot(),
        "last_ids": watch.ids[-2:], **(watch.first or {"first_object_iteration": None}),
    })
    if watch.kept:
        eval_started = time.perf_counter()
        prediction.meta["curve"] = [_curve_point(dataset, snapshot, seconds, trainer.device)
                                    for seconds, snapshot in watch.kept]
        watch.self_s += time.perf_counter() - eval_started
    prediction.meta["self_eval_s"] = watch.self_s
    return prediction


def _iteration(engine) -> int:
    return 0 if engine.trainer is None else engine.trainer.iteration


def _stream_wall_clock(engine, frames, fps: float, total: int, watch: _Watch, progress) -> None:
    """Frames at ``fps`` into the engine's threads (periodic extractions every
    ``extract_every`` iterations' worth of the engine's own clock are replaced by its
    default period), then training until ``total``; the first object is the first
    periodic extraction that published one."""
    engine.start()
    try:
        period = 1.0 / fps
        next_at = time.perf_counter()
        seen = 0

        def poll() -> None:
            latest = engine.latest_result
            if watch.first is None and latest is not None and latest.objects:
                watch.first = {"first_object_iteration": latest.iteration, "first_object_frames": seen,
                               "first_object_s": time.perf_counter() - watch.started}
            if progress is not None:
                progress(engine.stats()["iteration"] / max(total, 1), f"frame {seen}/{len(frames)}")

        for frame in frames:
            next_at += period
            engine.put(frame)
            seen += 1
            time.sleep(max(0.0, next_at - time.perf_counter()))
            poll()
        while engine.stats()["iteration"] < total:
            if not engine.running:
                raise RuntimeError("the engine's trainer thread stopped")
            time.sleep(0.05)
            poll()
    finally:
        engine.stop()


def _register() -> None:
    register_method(Method(
        name="clusteringsdf_online",
        description="ClusteringSDF through the online engine: frames in recording order, "
                    "the same iteration budget as the offline method",
        run=lambda dataset, options: stream_and_predict(dataset, options),
        needs=("torch", "depth", "instance_labels")), replace=True)


_register()
