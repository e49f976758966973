"""The online mapping engine: frames of a stream in, tracked objects out; no ROS.

:class:`MappingEngine` is what the mapping node, the bench's ``clusteringsdf_online``
method, the demo and the tests drive:

- ``put(frame)`` queues a frame from any thread (bounded queue, the oldest frame is
  dropped and counted when it is full);
- the model is created from the first frames: the scene bounds come from
  ``bounds_m`` or from the depth of the first ``bootstrap_frames`` frames
  (:func:`~clusteringsdf_core.online.extent.estimate_bounds`); later frames go to the
  trainer's key-frame buffer;
- with estimated bounds the map grows (``grow_map``): a key frame whose surfaces reach
  past the mapped volume enlarges it (:meth:`Trainer.grow`, nothing learned is lost) up
  to ``max_side_m`` per axis; counted as ``map_grown`` / ``map_growth_capped``;
- training: ``start()`` runs a trainer thread (drain the queue, ``step()`` while there
  are views, hand a snapshot to the extractor thread every ``extract_period_s``);
  without threads, :meth:`ingest`, :meth:`train` and :meth:`extract` do the same work
  on the calling thread, step by step, so a stream can be replayed deterministically;
- extraction: marching cubes per channel, then one
  :class:`~clusteringsdf_core.extract.ObjectTracker` for the engine's life (kept across
  resets, so ids are never reused) gives stable ids; periodic extractions publish a new
  object once it was seen ``extract.confirm_after`` times in a row, requested ones
  (``extract_now``, saves) at once. :attr:`latest_result` is the newest
  :class:`ObjectsResult`;
- ``save(dir)``: checkpoint (with key frames and object tracks), meshes, ``objects.json``,
  ``config.yaml``, ``map.json``; every ``autosave_period_s`` the checkpoint alone goes to
  ``autosave_dir`` (:mod:`.persistence`, written off the trainer thread);
  ``load_map(path)`` goes on from a saved or autosaved map, ids included.

While an extraction runs, the trainer lends it half of its torch threads
(:mod:`.threads`). Errors in either thread are counted (``trainer_errors``) and
logged; nothing learned is lost and the threads go on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clusteringsdf_core.config import Config
from clusteringsdf_core.config.lengths import resolve_lengths
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.online.counters import Counters
from clusteringsdf_core.online.extent import bootstrap_bounds, frame_growth
from clusteringsdf_core.online.extraction import ExtractJob, ObjectsResult, extract_tracked, write_map
from clusteringsdf_core.online.observations import view_summaries
from clusteringsdf_core.online.persistence import Autosaver, find_checkpoint
from clusteringsdf_core.online.threads import ThreadShare
from clusteringsdf_core.training.optim import preload_optimizer_modules

__all__ = ["MappingEngine", "BOOTSTRAP_FRAMES", "MAX_MAP_SIDE_M", "MIN_FRAME_SIDE_M"]

_NS = 1_000_000_000

#: Frames whose depth sets the scene bounds before the model is created.
BOOTSTRAP_FRAMES = 5
#: Largest side of a grown map (metres): the dense grids' memory grows with the volume.
MAX_MAP_SIDE_M = 20.0
#: Smallest side of the normalisation frame of a map with estimated bounds (metres): a
#: first view of a near wall must not make the grid cells millimetres wide.
MIN_FRAME_SIDE_M = 4.0


class MappingEngine:
    """Frames in, tracked objects out (module docstring).

    ``log(level, message)`` receives the engine's messages (``info``, ``warn``,
    ``error``); ``now_ns()`` stamps extractions (the node passes its ROS clock).
    """

    def __init__(self, config: Config, *, classes: ClassTable = SCANNET_REDUCED,
                 bounds_m: np.ndarray | None = None, queue_size: int = 8,
                 extract_period_s: float = 10.0, counters: Counters | None = None,
                 now_ns: Callable[[], int] = time.time_ns,
                 log: Callable[[str, str], None] = lambda level, msg: None,
                 bootstrap_frames: int = BOOTSTRAP_FRAMES, grow_map: bool = True,
                 max_side_m: float = MAX_MAP_SIDE_M, autosave_dir: str | Path | None = None,
                 autosave_period_s: float = 0.0, autosave_keep: int = 2):
        from clusteringsdf_core.extract import ObjectTracker

        preload_optimizer_modules()   # now, not while frames queue up for the first model
        self.config = config                   # the config a new model gets
        self.classes = classes
        self.bounds_m = None if bounds_m is None else np.asarray(bounds_m, np.float64).reshape(2, 3)
        self.extract_period_s = float(extract_period_s)
        self.counters = counters or Counters()
        self.now_ns = now_ns
        self.log = log
        self.bootstrap_frames = int(bootstrap_frames)
        self.grow_map = bool(grow_map)
        self.max_side_m = float(max_side_m)
        self.tracker = ObjectTracker.from_config(config.extract)
        self._queue: collections.deque[Frame] = collections.deque(maxlen=int(queue_size))
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._commands: collections.deque = collections.deque()
        self._trainer = None
        self._bootstrap: list[Frame] = []
        self._state_lock = threading.Lock()
        self._stats: dict[str, Any] = {"iteration": 0, "losses": {}, "views": 0,
                                       "it_per_s": 0.0, "state": "waiting_for_frames",
                                       "bounds_m": None}
        self._rate_window: collections.deque = collections.deque(maxlen=50)
        self._last_extract = time.monotonic()
        self._last_extract_iteration = -1
        # extraction hand-off: one pending job (newest wins), a condition for waiters
        self._extract_cv = threading.Condition()
        self._extract_job: ExtractJob | None = None
        self._extract_busy = False
        self._cpu_share = ThreadShare()          # torch's default, read on the caller's thread
        self._requests = 0           # extraction requests made
        self._requests_served = 0    # ... covered by a finished extraction
        self._requests_queued = 0    # ... covered by a queued or running extraction
        self._seq = 0
        self._latest: ObjectsResult | None = None
        self._autosaver = (Autosaver(autosave_dir, period_s=autosave_period_s, keep=autosave_keep)
                           if autosave_dir is not None and autosave_period_s > 0 else None)
        self._threads = [threading.Thread(target=self._train_loop, name="mapping_trainer", daemon=True),
                         threading.Thread(target=self._extract_loop, name="mapping_extractor",
                                          daemon=True)]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the trainer and extractor threads."""
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._extract_cv:
            self._extract_cv.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=timeout)
        if self._autosaver is not None:
            self._autosaver.join(timeout)

    @property
    def running(self) -> bool:
        return self._threads[0].is_alive()

    # ------------------------------------------------------------------ inputs
    def put(self, frame: Frame) -> None:
        """Queue a frame (any thread); a full queue drops its oldest frame."""
        with self._queue_lock:
            if len(self._queue) == self._queue.maxlen:
                self.counters.inc("dropped_queue_full")
            self._queue.append(frame)
        self.counters.inc("frames_enqueued")
        self._wake.set()

    def queue_length(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    # ------------------------------------------------------------------ driving without threads
    def _check_inline(self, what: str) -> None:
        if self.running:
            raise RuntimeError(f"{what}: the engine's threads are running (use submit/extract_now)")

    def ingest(self) -> int:
        """Without threads: hand the queued frames to the model (creating it once the
        bounds are known). Returns how many frames were taken from the queue."""
        self._check_inline("ingest")
        return self._drain()

    def bootstrap_now(self) -> bool:
        """Without threads: create the model from the frames waiting for the bounds even
        if fewer than ``bootstrap_frames`` came (a stream that ended early). True if a
        model exists afterwards."""
        self._check_inline("bootstrap_now")
        if self._trainer is None and self._bootstrap:
            self._create_model()
        return self._trainer is not None

    def train(self, steps: int) -> dict[str, float]:
        """Without threads: ``steps`` training steps (none while there is no model or no
        view yet). Returns the last step's losses."""
        self._check_inline("train")
        losses: dict[str, float] = {}
        trainer = self._trainer
        if trainer is None or not trainer.views:
            return losses
        for _ in range(int(steps)):
            self._record_step(trainer, trainer.step())
            self._maybe_autosave(trainer)
        return trainer.last_losses if steps else losses

    def extract(self, *, live: bool = True, confirm_new: bool = False) -> ObjectsResult:
        """Without threads: extract the objects of the current model and track them, as a
        periodic extraction would (``live`` resolution; new objects wait for
        confirmation unless ``confirm_new``)."""
        self._check_inline("extract")
        if self._trainer is None or not self._trainer.views:
            raise RuntimeError(self._no_model_reason())
        trainer = self._trainer
        return self._extract(trainer.snapshot(), view_summaries(trainer.views), str(trainer.device),
                             self.now_ns(), live=live, confirm_new=confirm_new)

    # ------------------------------------------------------------------ cross-thread access
    def submit(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future:
        """Run ``fn(trainer_or_None)`` on the trainer thread; a Future of its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._stop.is_set() or not self.running:
            future.set_exception(RuntimeError("the trainer thread is not running"))
            return future
        self._commands.append((fn, future))
        self._wake.set()
        return future

    @property
    def trainer(self):
        """The trainer (None before the model exists); touch it from the trainer thread
        only (:meth:`submit`) while the threads run."""
        return self._trainer

    @property
    def latest_result(self) -> ObjectsResult | None:
        with self._extract_cv:
            return self._latest

    def stats(self) -> dict[str, Any]:
        """Iteration, views, iterations per second, state, bounds, and the loss terms as of
        the last multiple of ``trainer.log_every`` iterations (reading them every step
        would make the host wait for the device every step)."""
        with self._state_lock:
            return dict(self._stats, losses=dict(self._stats["losses"]))

    @property
    def has_model(self) -> bool:
        return self._trainer is not None

    def _do_reset(self, _trainer=None) -> bool:
        self._trainer = None
        self._bootstrap = []
        self._last_extract_iteration = -1
        with self._state_lock:
            self._stats.update(iteration=0, losses={}, views=0, it_per_s=0.0,
                               state="waiting_for_frames", bounds_m=None)
        self._rate_window.clear()
        return True

    def reset(self) -> concurrent.futures.Future:
        """A new model with :attr:`config` (lazily, from the next frames); ids keep counting."""
        if not self.running:
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_result(self._do_reset())
            return future
        return self.submit(self._do_reset)

    def apply_live(self, config: Config) -> concurrent.futures.Future:
        """Loss weights and learning rate of ``config`` into the running trainer."""
        def do(trainer):
            if trainer is None:
                return False
            trainer.update_live(config)
            return True
        return self.submit(do)

    def extract_now(self, timeout: float | None = None) -> ObjectsResult:
        """Snapshot and extract now; blocks until done. RuntimeError when there is no model."""
        with self._extract_cv:
            self._requests += 1
            wanted = self._requests
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._extract_cv:
            while self._requests_served < wanted:
                if self._stop.is_set():
                    raise RuntimeError("the engine is shutting down")
                if self._trainer is None or not self._trainer.views:
                    self._requests_served = max(self._requests_served, wanted)
                    raise RuntimeError(self._no_model_reason())
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("extraction did not finish in time")
                self._extract_cv.wait(0.1 if left is None else min(0.1, left))
            assert self._latest is not None
            return self._latest

    def _no_model_reason(self) -> str:
        if self.bounds_m is None:
            return (f"no model yet: waiting for frames ({len(self._bootstrap)} of "
                    f"{self.bootstrap_frames} needed to estimate the scene bounds)")
        return "no model yet: waiting for frames"

    def save(self, out_dir: Path, *, timeout: float = 120.0) -> Path:
        """Checkpoint + extraction + meshes/objects.json/config.yaml/map.json into ``out_dir``.
        The checkpoint's object tracks are those after this extraction, so a map loaded
        from it publishes the ids saved here. From any thread while the engine runs;
        without threads (or after :meth:`stop`) it works inline."""
        from clusteringsdf_core.training.checkpoint import copy_state, write_checkpoint

        out_dir = Path(out_dir)

        def grab(trainer):
            if trainer is None:
                raise RuntimeError(self._no_model_reason())
            return (copy_state(trainer.state_dict()), list(trainer.views) if trainer.online else [],
                    trainer.snapshot(), view_summaries(trainer.views), str(trainer.device))

        if self.running:
            state, keyframes, snapshot, views, device = self.submit(grab).result(timeout=timeout)
            result = self._extract_via_thread(snapshot, views, device, timeout)
        else:
            state, keyframes, snapshot, views, device = grab(self._trainer)
            result = self._extract(snapshot, views, device, self.now_ns())
        write_checkpoint(out_dir / "checkpoint.pt", {**state, **self._engine_state()}, keyframes)
        return self._write_map(out_dir, result, snapshot)

    def _engine_state(self) -> dict:
        """What a checkpoint holds beside the trainer: the object tracks (ids go on)."""
        return {"engine": {"tracker": self.tracker.state_dict()}}

    def load_map(self, path: str | Path, *, timeout: float = 120.0) -> dict[str, Any]:
        """Replace the model with the map at ``path`` (:func:`find_checkpoint`: a
        checkpoint, a saved map, an autosave folder) and go on training it with the
        frames that come next. The map keeps the configuration it was trained with; the
        device is this engine's ``trainer.device``. Its object tracks come along, so ids
        continue and its objects are published at once. Raises (FileNotFoundError,
        ValueError, RuntimeError) with nothing changed when the map cannot be read.
        Returns what was loaded (path, iteration, key frames, objects)."""
        from clusteringsdf_core.training import Trainer
        from clusteringsdf_core.training.checkpoint import read_checkpoint

        checkpoint = find_checkpoint(path)
        state = read_checkpoint(checkpoint)
        trainer = Trainer.load_checkpoint(checkpoint, state=state, device=self.config.trainer.device)
        if trainer.classes != self.classes:
            raise ValueError(f"{checkpoint}: the map was trained with another class table "
                             f"({len(trainer.classes)} classes) than this engine's ({len(self.classes)})")
        tracks = (state.get("engine") or {}).get("tracker")

        def swap(_old):
            self._trainer, self._bootstrap = trainer, []
            self._last_extract_iteration = -1
            if self._autosaver is not None:
                self._autosaver.mark(trainer.iteration)
            if tracks is not None:
                self.tracker.load_state_dict(tracks)
            with self._state_lock:
                self._stats.update(iteration=trainer.iteration, losses={}, views=len(trainer.views),
                                   it_per_s=0.0, state="training", bounds_m=trainer.box.bounds_m.tolist())
            self._rate_window.clear()
            objects = tuple(self.tracker.published())
            if objects:
                with self._extract_cv:
                    self._seq += 1
                    self._latest = ObjectsResult(seq=self._seq, iteration=trainer.iteration,
                                                 stamp_ns=self.now_ns(), objects=objects, seconds=0.0)
            return {"path": str(checkpoint), "iteration": trainer.iteration, "views": len(trainer.views),
                    "objects": [t.id for t in objects]}

        summary = self.submit(swap).result(timeout=timeout) if self.running else swap(self._trainer)
        self.log("info", f"map loaded from {checkpoint}: iteration {summary['iteration']}, "
                         f"{summary['views']} key frames, objects {summary['objects']}")
        return summary

    def _maybe_autosave(self, trainer) -> None:
        """When an autosave is due (:meth:`Autosaver.due`): the state is copied here and
        written on a thread of its own."""
        if self._autosaver is not None and self._autosaver.due(trainer.iteration):
            self._autosaver.start({**trainer.state_dict(), **self._engine_state()},
                                  trainer.views if trainer.online else [], self._autosaved)

    def _autosaved(self, iteration: int, path: Path | None, error: Exception | None) -> None:
        """An autosave's outcome (on its thread): counted and kept in the stats; a
        failure (e.g. a full disk) is retried next period."""
        self.counters.inc("autosaves" if error is None else "autosave_failures")
        with self._state_lock:
            last = self._stats.get("autosave") or {}
            self._stats["autosave"] = ({"path": str(path), "iteration": iteration, "error": ""} if error is None
                                       else {**last, "error": f"{type(error).__name__}: {error}"})
        if error is not None:
            self.log("error", f"autosave failed: {type(error).__name__}: {error}")

    # ------------------------------------------------------------------ trainer thread
    def _train_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_commands()
                self._drain()
                trainer = self._trainer
                if trainer is not None and trainer.views:
                    self._cpu_share.trainer(trainer, extracting=self._extract_busy)
                    losses = trainer.step()
                    self._record_step(trainer, losses)
                    self._maybe_extract(trainer)
                    self._maybe_autosave(trainer)
                else:
                    self._wake.wait(0.05)
                    self._wake.clear()
            except Exception as exc:  # the thread must survive anything; nothing learned is lost
                self.counters.inc("trainer_errors")
                self.log("error", f"trainer thread: {type(exc).__name__}: {exc}")
                self._stop.wait(0.2)
        self._run_commands(cancel=True)

    def _run_commands(self, cancel: bool = False) -> None:
        while self._commands:
            fn, future = self._commands.popleft()
            if cancel:
                future.set_exception(RuntimeError("the engine is shutting down"))
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(self._trainer))
            except BaseException as exc:  # delivered to the caller
                future.set_exception(exc)

    def _drain(self) -> int:
        taken = 0
        while True:
            with self._queue_lock:
                if not self._queue:
                    return taken
                frame = self._queue.popleft()
            taken += 1
            if self._trainer is None:
                self._bootstrap_with(frame)
            else:
                self._add(frame)

    def _bootstrap_with(self, frame: Frame) -> None:
        if self.bounds_m is None:
            dc = self.config.data
            if frame.depth_m is not None and not np.any((frame.depth_m >= dc.depth_min_m)
                                                        & (frame.depth_m <= dc.depth_max_m)):
                self.counters.inc("frames_bootstrap_skipped")
                return
            self._bootstrap.append(frame)
            with self._state_lock:
                self._stats["state"] = f"estimating_bounds ({len(self._bootstrap)}/{self.bootstrap_frames})"
            if len(self._bootstrap) < self.bootstrap_frames:
                return
        else:
            self._bootstrap.append(frame)
        self._create_model()

    def _create_model(self) -> None:
        """The trainer, with the fixed bounds or those of the bootstrap frames, which it
        then takes as its first frames."""
        from clusteringsdf_core.model.fields import SceneBox
        from clusteringsdf_core.training import Trainer

        if self.bounds_m is None:     # the first frames' bounds, and the lengths for the scene's size
            bounds, config, length_scale = bootstrap_bounds(self._bootstrap, self.config)
        else:
            bounds = self.bounds_m
            config, length_scale = resolve_lengths(self.config, bounds)
        frames, self._bootstrap = self._bootstrap, []
        box = SceneBox(bounds, padding_m=config.render.bounds_padding_m)
        if self.bounds_m is None:
            # The normalisation frame fixes the grids' cells per metre for the map's life: not finer
            # than a MIN_FRAME_SIDE_M room's (scaled as the lengths are), however little was seen.
            half = max(float((box.bounds_m[1] - box.bounds_m[0]).max()), MIN_FRAME_SIDE_M * length_scale) / 2
            centre = box.bounds_m.mean(0)
            box = SceneBox(box.bounds_m, padding_m=0.0, frame_bounds_m=np.stack([centre - half, centre + half]))
        self._trainer = Trainer(config, box, classes=self.classes, length_scale=length_scale)
        with self._state_lock:
            # the volume the map covers (padded by render.bounds_padding_m; grows later)
            self._stats.update(state="training", bounds_m=self._trainer.box.bounds_m.tolist())
        self.log("info", f"model created on {self._trainer.device} with scene bounds "
                         f"{np.round(bounds, 2).tolist()} m")
        for f in frames:
            self._add(f)

    def _add(self, frame: Frame) -> None:
        try:
            kept = self._trainer.add_frame(frame)
        except ValueError as exc:
            self.counters.inc("rejected_by_trainer")
            self.log("warn", f"frame at {frame.stamp_s:.3f} s refused by the trainer: {exc}")
            return
        self.counters.inc("frames_kept" if kept else "frames_not_keyframe")
        if kept and self.grow_map and self.bounds_m is None:
            self._grow_for(frame)

    def _grow_for(self, frame: Frame) -> None:
        """Enlarge the map for a key frame whose surfaces reach past it (module docstring)."""
        trainer = self._trainer
        target, capped = frame_growth(trainer.box.bounds_m, frame, trainer.config, trainer.length_scale,
                                      max_side_m=self.max_side_m)
        if capped:
            self.counters.inc("map_growth_capped")
        if target is None or not trainer.grow(target):
            return
        self.counters.inc("map_grown")
        bounds = trainer.box.bounds_m
        with self._state_lock:
            self._stats["bounds_m"] = bounds.tolist()
        self.log("info", f"map grown to {np.round(bounds, 2).tolist()} m for the frame at {frame.stamp_s:.3f} s")

    def _record_step(self, trainer, losses: dict) -> None:
        now = time.monotonic()
        self._rate_window.append((now, trainer.iteration))
        t0, i0 = self._rate_window[0]
        rate = (trainer.iteration - i0) / (now - t0) if now > t0 else 0.0
        update = dict(iteration=trainer.iteration, views=len(trainer.views), it_per_s=rate, state="training")
        if trainer.iteration % trainer.config.trainer.log_every == 0 or not self._stats["losses"]:
            from clusteringsdf_core.training import as_floats

            update["losses"] = as_floats(losses)      # a host round trip, every log_every steps
        with self._state_lock:
            self._stats.update(update)

    def _maybe_extract(self, trainer) -> None:
        with self._extract_cv:
            requested = self._requests > self._requests_queued
            busy = self._extract_busy or self._extract_job is not None
            covers = self._requests
            sync_job_waiting = self._extract_job is not None and self._extract_job.waited_on
        due = (time.monotonic() - self._last_extract >= self.extract_period_s
               and trainer.iteration != self._last_extract_iteration and not busy)
        if sync_job_waiting or not (requested or due):
            return
        job = ExtractJob(trainer.snapshot(), view_summaries(trainer.views), str(trainer.device),
                          covers, None, requested)
        self._last_extract = time.monotonic()
        self._last_extract_iteration = trainer.iteration
        with self._extract_cv:
            if self._extract_job is not None and self._extract_job.waited_on:
                return                   # a save's extraction came in meanwhile: it goes first
            self._extract_job = job      # a newer job replaces one not started yet
            self._requests_queued = max(self._requests_queued, covers)
            self._extract_cv.notify_all()

    # ------------------------------------------------------------------ extractor thread
    def _extract_via_thread(self, snapshot, views, device, timeout: float) -> ObjectsResult:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._extract_cv:
            while self._extract_job is not None and self._extract_job.waited_on:
                self._extract_cv.wait(0.1)   # another caller's synchronous job goes first
            replaced = self._extract_job     # a periodic job not started yet: this one covers it
            self._extract_job = ExtractJob(snapshot, views, device,
                                            None if replaced is None else replaced.covers, future, True)
            self._extract_cv.notify_all()
        return future.result(timeout=timeout)

    def _extract_loop(self) -> None:
        while True:
            with self._extract_cv:
                while self._extract_job is None and not self._stop.is_set():
                    self._extract_cv.wait(0.5)
                if self._stop.is_set():
                    if self._extract_job is not None and self._extract_job.waited_on:
                        self._extract_job.future.set_exception(RuntimeError("the engine is shutting down"))
                    self._extract_job = None
                    return
                job, self._extract_job = self._extract_job, None
                self._extract_busy = True
            self._cpu_share.extractor(self._trainer)
            try:
                # Periodic extractions and extract_now at the live resolution, saves at
                # the full one; requested ones publish new objects at once.
                result = self._extract(job.snapshot, job.views, job.device, self.now_ns(),
                                       live=not job.waited_on, confirm_new=job.requested)
                if job.future is not None:
                    job.future.set_result(result)
            except Exception as exc:
                self.counters.inc("trainer_errors")
                self.log("error", f"extraction failed: {type(exc).__name__}: {exc}")
                if job.future is not None:
                    job.future.set_exception(exc)
            finally:
                with self._extract_cv:
                    self._extract_busy = False
                    if job.covers is not None:
                        self._requests_served = max(self._requests_served, job.covers)
                    self._extract_cv.notify_all()

    def _extract(self, snapshot, views, device: str, stamp_ns: int, *, live: bool = False,
                 confirm_new: bool = True) -> ObjectsResult:
        started = time.perf_counter()
        tracked = extract_tracked(snapshot, views, device, self.tracker, stamp_ns / _NS, live=live,
                                  confirm_new=confirm_new)
        with self._extract_cv:
            self._seq += 1
            result = ObjectsResult(seq=self._seq, iteration=snapshot.iteration, stamp_ns=stamp_ns,
                                   objects=tuple(tracked), seconds=time.perf_counter() - started)
            self._latest = result
        self.counters.inc("extractions")
        return result

    def _write_map(self, out_dir: Path, result: ObjectsResult, snapshot) -> Path:
        stats = self.stats()
        return write_map(out_dir, result, snapshot, self.classes, bounds_m=stats.get("bounds_m"),
                         num_views=stats.get("views"), counters=self.counters.snapshot())
