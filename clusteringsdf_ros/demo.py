"""The main job through the ROS pipeline: scene -> rosbag -> bag_player -> mapping_node.

:func:`run_demo` (``clusteringsdf ros demo``, ``make demo``):

1. makes (or reuses) the demo's synthetic scene with simulated segmenter labels
   (:func:`clusteringsdf_core.pipeline.demo_scene`) and writes it as a rosbag2 (reused
   while the scene is unchanged);
2. starts the bag player and the mapping node as separate processes, from the same
   node description as ``replay.launch.py`` (:mod:`clusteringsdf_ros.launch_spec`);
3. watches them like a planner would, from this process: ``/objects`` (ids of each
   publication) and the node's ``~/status`` (iteration, frames, drops);
4. when the bag has ended and the node has trained ``trainer.iterations`` steps, calls
   ``~/save_map`` (meshes, objects JSON, checkpoint) and stops the nodes;
5. evaluates the saved map against ground truth on the held-out views, next to the
   bench's no-network baselines (naive id fusion, Felzenszwalb, HDBSCAN: each timed,
   and whether ClusteringSDF beats all of them on PQ^scene), and draws the pictures
   (segmented object meshes, input labels vs each baseline vs fused labels).

:class:`ReplaySession` (processes + the watching node) is also what the end-to-end test
drives.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from clusteringsdf_ros.launch_spec import NodeSpec

__all__ = ["ReplaySession", "ObjectsSeen", "run_demo", "print_summary", "write_demo_bag", "map_through_nodes"]


@dataclasses.dataclass
class ObjectsSeen:
    """One ``/objects`` publication as a planner sees it."""

    received_s: float                       # monotonic time of arrival
    iteration: int                          # training iteration of the extraction (from the status)
    ids: tuple[int, ...]
    classes: tuple[str, ...]
    centers: np.ndarray                     # (n, 3) box centres, map frame
    sizes: np.ndarray                       # (n, 3) box sizes
    yaws: np.ndarray                        # (n,) box yaw about +z, radians
    stamp_ns: int


def _node_path(spec: NodeSpec) -> str:
    """The fully qualified name of a spec's node ('/ns/name')."""
    ns = spec.namespace.strip("/")
    return f"/{ns}/{spec.name}" if ns else f"/{spec.name}"


def _yaw(q) -> float:
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))


class ReplaySession:
    """Node processes started from :class:`NodeSpec` values, watched from this process.

    Use as a context manager; needs ``rclpy.init()`` done by the caller. ``mapping``
    is the name of the mapping node spec (its ``/objects``, ``~/status`` and
    ``~/save_map`` are watched; its status values are :attr:`status`); ``objects_topic``
    where it publishes. The ``~/status`` of every other spec is kept too:
    :meth:`node_status` (e.g. the segmenter node's counters).
    """

    def __init__(self, specs: Sequence[NodeSpec], *, mapping: str = "mapping_node",
                 objects_topic: str = "/objects", log_dir: str | Path | None = None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_srvs.srv import Trigger

        from clusteringsdf_ros.msg import ObjectArray

        self.specs = {s.name: s for s in specs}
        self.mapping_name = mapping
        self._mapping_prefix = _node_path(self.specs[mapping])
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.status: dict[str, str] = {}
        self._statuses: dict[str, dict[str, str]] = {}
        self.objects: list[ObjectsSeen] = []
        self._lock = threading.Lock()
        self.node = rclpy.create_node("clusteringsdf_demo_watcher")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(ObjectArray, objects_topic, self._on_objects, latched)
        self.node.create_subscription(DiagnosticArray, f"{self._mapping_prefix}/status", self._on_status, 10)
        for name, spec in self.specs.items():
            self._statuses[name] = {}
            if name != mapping:
                self.node.create_subscription(DiagnosticArray, f"{_node_path(spec)}/status",
                                              functools.partial(self._on_node_status, name), 10)
        self.save_client = self.node.create_client(Trigger, f"{self._mapping_prefix}/save_map")
        self._trigger = Trigger
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    # ------------------------------------------------------------------ callbacks
    def _on_status(self, msg) -> None:
        if msg.status:
            with self._lock:
                self.status = {kv.key: kv.value for kv in msg.status[0].values}

    def _on_node_status(self, name: str, msg) -> None:
        if msg.status:
            with self._lock:
                self._statuses[name] = {kv.key: kv.value for kv in msg.status[0].values}

    def node_status(self, name: str) -> dict[str, str]:
        """The last ``~/status`` values of the node spec ``name`` (empty before the first)."""
        with self._lock:
            return dict(self.status if name == self.mapping_name else self._statuses[name])

    def _on_objects(self, msg) -> None:
        objs = list(msg.objects)
        seen = ObjectsSeen(
            received_s=time.monotonic(), iteration=int(msg.iteration),
            ids=tuple(int(o.id) for o in objs), classes=tuple(o.class_name for o in objs),
            centers=np.array([[o.bbox_pose.position.x, o.bbox_pose.position.y, o.bbox_pose.position.z]
                              for o in objs]).reshape(-1, 3),
            sizes=np.array([[o.bbox_size.x, o.bbox_size.y, o.bbox_size.z] for o in objs]).reshape(-1, 3),
            yaws=np.array([_yaw(o.bbox_pose.orientation) for o in objs]),
            stamp_ns=msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        with self._lock:
            self.objects.append(seen)

    # ------------------------------------------------------------------ processes
    def __enter__(self) -> "ReplaySession":
        from clusteringsdf_ros.launch_fallback import command

        for name, spec in self.specs.items():
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "w")
                self._logs.append(out)
            self.procs[name] = subprocess.Popen(command(spec), stdout=out, stderr=subprocess.STDOUT if out else None)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def finished(self, name: str) -> bool:
        return self.procs[name].poll() is not None

    def returncode(self, name: str) -> int | None:
        return self.procs[name].poll()

    def status_value(self, key: str, default: Any = None, cast: Callable = str) -> Any:
        with self._lock:
            value = self.status.get(key)
        if value is None:
            return default
        try:
            return cast(value)
        except ValueError:
            return default

    def spin(self, seconds: float) -> None:
        """Process callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.1))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, *, tick: Callable[[], None] | None = None,
                 fail_if_dead: Sequence[str] = ()) -> bool:
        """Spin until ``predicate()`` (True), ``timeout_s`` passes (False) or a process of
        ``fail_if_dead`` exits (RuntimeError with its exit code)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.spin(0.25)
            if tick is not None:
                tick()
            if predicate():
                return True
            for name in fail_if_dead:
                if self.finished(name):
                    raise RuntimeError(f"{name} exited with code {self.returncode(name)}"
                                       + (f" (log: {self.log_dir / (name + '.log')})" if self.log_dir else ""))
        return False

    def save_map(self, timeout_s: float = 300.0) -> Path:
        """Call the mapping node's ``~/save_map``; the folder it wrote."""
        if not self.save_client.wait_for_service(timeout_sec=30.0):
            raise RuntimeError(f"{self._mapping_prefix}/save_map is not available")
        future = self.save_client.call_async(self._trigger.Request())
        end = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.1)
        if not future.done():
            raise RuntimeError(f"save_map did not answer within {timeout_s:.0f} s")
        reply = future.result()
        if not reply.success:
            raise RuntimeError(f"save_map failed: {reply.message}")
        return Path(reply.message)

    def stop(self, grace_s: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every running process (nodes then shut down cleanly), kill after ``grace_s``."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self.node is not None:
            self.executor.remove_node(self.node)
            self.node.destroy_node()
            self.executor.shutdown()
            self.node = None
        return {n: p.returncode for n, p in self.procs.items()}


# --------------------------------------------------------------------------- the demo


def write_demo_bag(dataset, bag_dir: Path, *, source_mtime: float, **bag_options) -> tuple[Path, bool]:
    """The scene's bag (``write_bag_from_dataset`` with ``bag_options``), rewritten only
    when the scene is newer than it or the options differ. (path, written)."""
    from clusteringsdf_ros.bags import write_bag_from_dataset

    stamp = bag_dir.with_suffix(".json")
    wanted = {"scene_mtime": source_mtime, "options": bag_options}
    if bag_dir.exists() and stamp.exists():
        written = json.loads(stamp.read_text())
        if {"scene_mtime": written.get("scene_mtime"), "options": written.get("options", {})} == wanted:
            return bag_dir, False
    if bag_dir.exists():
        import shutil
        shutil.rmtree(bag_dir)
    summary = write_bag_from_dataset(dataset, bag_dir, **bag_options)
    stamp.write_text(json.dumps({**wanted, "frames": summary.frames, "messages": summary.messages}, indent=1))
    return bag_dir, True


def _load_saved_objects(folder: Path) -> list[tuple]:
    import trimesh

    records = json.loads((folder / "objects.json").read_text())["objects"]
    out = []
    for r in records:
        mesh = trimesh.load(folder / r["mesh"], force="mesh", process=False)
        out.append((mesh, int(r["id"])))
    return out


def local_dds_defaults() -> dict[str, str]:
    """DDS settings for a job that runs all its nodes on this machine, unless the caller set
    its own: discovery on loopback only, and Fast DDS with the package's profile
    (``config/fastdds_loopback.xml``: 16 MiB shared-memory segments). With Fast DDS's
    default 0.5 MiB segments, best-effort 320x240 images were lost while the trainer kept
    the node busy (36 of 80 colour images arrived). Returns what was set."""
    from clusteringsdf_ros.launch_fallback import share_file

    wanted = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp":
        wanted["FASTDDS_DEFAULT_PROFILES_FILE"] = share_file("fastdds_loopback.xml")
    set_now = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now


def map_through_nodes(specs: Sequence[NodeSpec], target: int, timeout_s: float, log_dir: Path, *,
                      progress: bool = True) -> dict:
    """Run ``specs`` (a bag player and a mapping node, maybe a segmenter) as processes
    until the bag has ended and the mapping node has trained ``target`` iterations (or
    ``timeout_s`` passed), then ``~/save_map`` and stop them. Returns ``folder`` (the
    saved map), ``publications`` (the ``/objects`` seen), ``status`` (the mapping
    node's last), ``node_status`` (the last of every other node that reports one, e.g.
    the segmenter's counters), ``node_exit_codes``, ``bag_player_exit``,
    ``reached_target`` and ``timings`` (bag_s, training_s, save_map_s)."""
    import rclpy

    timings: dict[str, float] = {}
    out: dict[str, Any] = {}
    owns_context = not rclpy.ok()
    if owns_context:
        rclpy.init()
    bar = None
    try:
        with ReplaySession(specs, log_dir=log_dir) as session:
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=target, desc="mapping_node", unit="it", dynamic_ncols=True)

            def tick():
                if bar is not None:
                    it = session.status_value("iteration", 0, int)
                    bar.n = min(it, target)
                    bar.set_postfix_str(
                        f"frames {session.status_value('frames_buffered', 0, int)}, "
                        f"objects {session.status_value('objects', 0, int)}, "
                        f"bag {'done' if session.finished('bag_player') else 'playing'}", refresh=True)

            started = t0 = time.perf_counter()
            session.wait_for(lambda: session.finished("bag_player"), timeout_s, tick=tick,
                             fail_if_dead=["mapping_node"])
            timings["bag_s"] = time.perf_counter() - t0
            out["bag_player_exit"] = session.returncode("bag_player")
            out["reached_target"] = session.wait_for(
                lambda: session.status_value("iteration", 0, int) >= target,
                max(0.0, timeout_s - (time.perf_counter() - started)), tick=tick, fail_if_dead=["mapping_node"])
            timings["training_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out["folder"] = session.save_map()
            timings["save_map_s"] = time.perf_counter() - t0
            out["status"] = dict(session.status)
            out["node_status"] = {name: session.node_status(name) for name in session.specs
                                  if name != session.mapping_name}
            out["publications"] = list(session.objects)
            out["node_exit_codes"] = session.stop()
    finally:
        if bar is not None:
            bar.close()
        if owns_context and rclpy.ok():
            rclpy.shutdown()
    out["timings"] = timings
    return out


def run_demo(out_dir: str | Path, *, seed: int = 0, config_file: str | None = None, iterations: int | None = None,
             rate: float = 1.0, timeout_s: float = 1800.0, baselines: Sequence[str] | None = None,
             figure_views: int = 3, progress: bool = True) -> dict:
    """The demo job (module docstring). ``baselines``: the bench's baselines scored
    beside the map (None: ``pipeline.DEMO_BASELINES``, all of them). Returns the summary
    also written to ``results.json``; ``ok`` is False when the nodes failed or nothing
    was learned."""
    from clusteringsdf_core.pipeline import (DEMO_BASELINES, check_baselines, demo_scene, evaluate_against_gt,
                                             results_markdown)
    from clusteringsdf_core.training import Trainer
    from clusteringsdf_ros.launch_fallback import _share_config
    from clusteringsdf_ros.launch_spec import replay_nodes
    from clusteringsdf_ros.params import load_params_file

    baselines = check_baselines(DEMO_BASELINES if baselines is None else baselines)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    dataset = demo_scene(out / "scene", seed=seed)
    bag, written = write_demo_bag(dataset, out / "bag", source_mtime=(out / "scene" / "scene.json").stat().st_mtime)
    timings["scene_and_bag_s"] = time.perf_counter() - started

    config_file = str(Path(config_file or _share_config()).resolve())
    config, _ = load_params_file(config_file)
    target = int(iterations if iterations is not None else config.trainer.iterations)
    maps = out / "maps"
    specs = replay_nodes(str(bag), config_file, rate=rate, output_dir=str(maps))
    specs = [dataclasses.replace(s, parameters={**s.parameters, "ros.save_on_shutdown": False})
             if s.name == "mapping_node" else s for s in specs]

    summary: dict[str, Any] = {"ok": False, "scene": str(out / "scene"), "bag": str(bag), "bag_written": written,
                               "config_file": config_file, "target_iterations": target,
                               "logs": str(out / "logs")}
    summary["dds_settings"] = local_dds_defaults()
    run = map_through_nodes(specs, target, timeout_s, out / "logs", progress=progress)
    timings.update(run.pop("timings"))
    folder = run.pop("folder")
    publications = run.pop("publications")
    summary.update(map_folder=str(folder), objects_publications=len(publications),
                   ids_stable_last_two=(len(publications) >= 2 and publications[-1].ids == publications[-2].ids),
                   **run)
    t0 = time.perf_counter()
    trainer = Trainer.load_checkpoint(folder / "checkpoint.pt", device="cpu")
    snapshot = trainer.snapshot()
    objects = _load_saved_objects(folder)
    report = evaluate_against_gt(dataset, snapshot, objects, out, baselines=baselines, figure_views=figure_views,
                                 title="ClusteringSDF (ROS)", report=print if progress else None)
    timings["evaluate_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    summary.update(ok=True, iterations=snapshot.iteration, num_objects=len(objects),
                   num_gt_objects=report["num_gt_objects"], metrics=report["metrics"], baselines=report["baselines"],
                   beats_baselines=report["beats_baselines"], figures=report["figures"], timings=timings)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "results.md").write_text(results_markdown(report))
    summary.update(table=report["table"], comparison=report["comparison"])
    return summary


def print_summary(s: dict) -> None:
    t = s.get("timings", {})
    st = s.get("status", {})
    print(f"\nscene:    {s['scene']} ({s.get('num_gt_objects', '?')} GT objects)")
    print(f"bag:      {s['bag']}{' (written)' if s.get('bag_written') else ' (reused)'}")
    print(f"nodes:    bag_player + mapping_node ({s['config_file']}); logs in {s['logs']}/")
    print(f"          frames received {st.get('sets_received', '?')}, buffered {st.get('frames_buffered', '?')}, "
          f"dropped from the queue {st.get('dropped_queue_full', '?')}; "
          f"{s.get('objects_publications', 0)} /objects publications, ids stable over the last two: "
          f"{s.get('ids_stable_last_two')}")
    print(f"training: {s.get('iterations', '?')} iterations (target {s['target_iterations']}) "
          f"in {t.get('training_s', 0):.0f} s after the bag started ({st.get('it_per_s', '?')} it/s at the end)")
    print(f"map:      {s.get('map_folder')} ({s.get('num_objects', 0)} objects: meshes/, objects.json, "
          f"checkpoint.pt)")
    if "table" in s:
        print(f"metrics on held-out views (results.json, results.md):\n{s['table']}")
        for line in s["comparison"]:
            print(line)
    print("figures:  " + "\n          ".join(s.get("figures", [])))
    print(f"total {t.get('total_s', 0):.0f} s")
