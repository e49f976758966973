"""Callback-time benchmark and soak of the mapping node: RGB-D + instance labels at
30 Hz, 640x480, while the trainer trains.

    scripts/env.sh python -m clusteringsdf_ros.bench_callbacks [--seconds 20 --rate 30 \\
        --width 640 --height 480 --out results.json]
    # the 30-minute soak (resident memory every 10 s, its curve as a picture; bench_memory)
    scripts/env.sh python -m clusteringsdf_ros.bench_callbacks --seconds 1800 \\
        --extract-period 60 --sample-period 10 --out outputs/soak/soak.json --plot outputs/soak/memory.png

One process runs a :class:`~clusteringsdf_ros.mapping_node.MappingNode` (a small CPU
model; poses from the PoseStamped topic) on a ``MultiThreadedExecutor`` as its
``main()`` does. A second process (this module with ``--publisher``, like a camera
driver + segmenter) publishes rgb8 colour, 16UC1 depth (mm), 16UC1 instance ids,
camera_info and a PoseStamped with one stamp per frame: a camera panning around a
simple room (walls, floor, ceiling, three boxes; ray cast once, then replayed in a
loop), so the node estimates its scene bounds from the depth and starts training.

Phases: warm-up until the trainer has run iterations (``iteration > 0``); a pause
(in-flight messages settle, baseline counters); exactly ``seconds * rate`` frames;
a pause; final counters. The numbers are differences over that window, so nothing
of the warm-up is counted.

What it reports (and writes to ``--out`` as JSON):
- frames published; per input topic, messages that reached the node's subscriptions
  (a shortfall there is DDS transport loss, before any callback ran);
- sets the synchroniser emitted (``sets_received``) and frames converted and queued
  for the trainer (``frames_enqueued``); drops before conversion (sync late /
  waiting, pose unmatched, out of order, bad input): **the callbacks kept up** when
  every published frame was converted and queued;
- ``dropped_queue_full``: frames the trainer queue replaced because the trainer was
  slower than the camera. That queue drops the oldest by design (the trainer uses
  the newest views); it says nothing about the callbacks;
- wall time of the callbacks (a synchronised set including its conversion; a pose),
  count / mean / p50 / p99 / max ms, their share of the frame period, and the latency
  from the publisher's stamp to the frame being queued;
- memory: the node process's resident set size (``VmRSS``), key frames held and the
  iteration every ``--sample-period`` seconds of the window; start, peak and end, and
  the growth of the peak from the window's first half to its second (a bounded node
  levels off: its key-frame buffer is full and evicts). ``--plot`` draws the curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusteringsdf_ros.bench_memory import memory_summary, plot_memory, sample_memory

_NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "/bench_callbacks"
FRAME_ID = "camera_color_optical_frame"

#: A small CPU model: trains while the benchmark runs, on one torch thread.
BENCH_CONFIG: dict[str, Any] = {
    "model.num_channels": 10, "model.grid_max_resolution": 64,
    "render.num_samples_coarse": 24, "render.num_samples": 16, "render.depth_guided_samples": 8,
    "sampling.rays_per_batch": 256, "loss.eikonal_points": 128,
    "data.image_width": 160, "data.image_height": 120,
    "trainer.device": "cpu", "trainer.num_threads": 1, "trainer.progress_bar": False,
}

#: Room [xmin, ymin, zmin], [xmax, ymax, zmax] (metres) and boxes standing in it.
ROOM = np.array([[-3.0, -2.5, 0.0], [3.0, 2.5, 2.6]])
BOXES = [np.array([[0.8, -0.6, 0.0], [1.6, 0.4, 0.75]]),      # table
         np.array([[-2.6, 1.2, 0.0], [-2.0, 2.2, 1.8]]),      # cabinet
         np.array([[1.5, 1.4, 0.0], [2.3, 2.1, 0.5]])]        # crate
#: Instance ids: walls -x, +x, -y, +y, floor, ceiling, then the boxes.
_COLOURS = np.array([[0, 0, 0], [200, 180, 160], [190, 170, 150], [180, 190, 170], [170, 180, 200],
                     [120, 100, 80], [235, 235, 235], [160, 60, 40], [40, 90, 160], [60, 150, 60]],
                    np.float32)


def _dds_environment() -> None:
    """DDS on loopback, a domain of its own, and shared-memory segments that fit a frame."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
    profile = REPO / "config" / "fastdds_loopback.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


# =========================================================================== the scene


def camera_pose(k: int, n: int) -> np.ndarray:
    """Camera optical frame in the map frame for frame ``k`` of a loop of ``n``: one full
    turn of yaw per loop on a small circle, 1.4 m up, looking 15 degrees down."""
    phase = 2.0 * math.pi * k / n
    yaw, pitch = phase, math.radians(-15.0)
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], axis=1)   # columns: x right, y down, z forward
    T[:3, 3] = [0.4 * math.cos(phase), 0.4 * math.sin(phase), 1.4]
    return T


def render(T: np.ndarray, width: int, height: int, f: float) -> tuple[np.ndarray, ...]:
    """(rgb uint8, depth metres float32, instance ids uint16) of the room seen from ``T``."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(u - width / 2) / f, (v - height / 2) / f, np.ones_like(u)], -1).reshape(-1, 3)
    d = d_cam @ T[:3, :3].T            # z-depth 1 along each ray: t is the depth
    o = T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        # leaving the room: the nearest wall plane ahead
        t_axis = np.where(d > 0, (ROOM[1] - o) * inv, (ROOM[0] - o) * inv)
        t_axis = np.where(np.isfinite(t_axis), t_axis, np.inf)
        axis = np.argmin(t_axis, axis=1)
        t = t_axis[np.arange(len(d)), axis]
        side = d[np.arange(len(d)), axis] > 0
        ids = np.array([[1, 2], [3, 4], [5, 6]])[axis, side.astype(int)]
        shade = np.abs(d[np.arange(len(d)), axis]) / np.linalg.norm(d, axis=1)
        for k, box in enumerate(BOXES):   # slab test, nearest hit in front of the camera
            t1, t2 = (box[0] - o) * inv, (box[1] - o) * inv
            near = np.nanmax(np.minimum(t1, t2), axis=1)
            far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (far >= near) & (near > 0) & (near < t)
            t = np.where(hit, near, t)
            ids = np.where(hit, 7 + k, ids)
            face = np.argmax(np.minimum(t1, t2), axis=1)
            shade = np.where(hit, np.abs(d[np.arange(len(d)), face]) / np.linalg.norm(d, axis=1),
                             shade)
    p = o + d * (0.999 * t)[:, None]   # just in front of the surface: a stable checker
    checker = ((np.floor(p[:, 0] * 2) + np.floor(p[:, 1] * 2) + np.floor(p[:, 2] * 2)) % 2) * 0.15
    rgb = _COLOURS[ids] * (0.55 + 0.3 * shade - checker)[:, None]
    return (np.clip(rgb, 0, 255).astype(np.uint8).reshape(height, width, 3),
            t.astype(np.float32).reshape(height, width), ids.astype(np.uint16).reshape(height, width))


# =========================================================================== publisher process


def run_publisher(args: argparse.Namespace) -> int:
    """Publish the frames; commands on stdin: ``pause``, ``measure N``, ``quit``."""
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from clusteringsdf_core.data.frame import Intrinsics
    from clusteringsdf_ros import conversions as conv
    from clusteringsdf_ros import transforms as tfm

    def say(line: str) -> None:
        print(line, flush=True)

    f = 0.9 * args.width
    intrinsics = Intrinsics(f, f, args.width / 2, args.height / 2, args.width, args.height)
    started = time.perf_counter()
    frames = []
    for k in range(args.loop_frames):
        T = camera_pose(k, args.loop_frames)
        rgb, depth, ids = render(T, args.width, args.height, f)
        frames.append({
            "rgb": conv.rgb_to_image(rgb, frame_id=FRAME_ID),
            "info": conv.intrinsics_to_camera_info(intrinsics, frame_id=FRAME_ID),
            "instance": conv.labels_to_image(ids, "16UC1", frame_id=FRAME_ID),
            "depth": conv.depth_to_image(depth, "16UC1", frame_id=FRAME_ID),
            "pose": tfm.matrix_to_pose_stamped(T, frame_id="map")})
    print(f"publisher: {len(frames)} frames rendered in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)

    rclpy.init()
    node = rclpy.create_node("bench_camera", namespace=args.namespace)
    image_qos = (qos_profile_sensor_data if args.image_qos == "sensor_data"
                 else QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    pubs = {"pose": node.create_publisher(PoseStamped, "camera/pose",
                                          QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)),
            "rgb": node.create_publisher(Image, "color/image_raw", image_qos),
            "info": node.create_publisher(CameraInfo, "color/camera_info", image_qos),
            "instance": node.create_publisher(Image, "segmentation/instance", image_qos),
            "depth": node.create_publisher(Image, "depth/image_raw", image_qos)}
    deadline = time.monotonic() + 60.0
    while any(p.get_subscription_count() < 1 for p in pubs.values()):
        if time.monotonic() > deadline:
            say("error: the mapping node's subscriptions did not appear in 60 s")
            return 1
        time.sleep(0.05)
    say("ready")

    commands: list[str] = []
    lock = threading.Lock()

    def read_commands() -> None:
        for line in sys.stdin:
            with lock:
                commands.append(line.strip())
        with lock:
            commands.append("quit")

    threading.Thread(target=read_commands, daemon=True).start()
    period = 1.0 / args.rate
    mode, todo, k = "warmup", 0, 0
    window: dict[str, Any] = {}
    next_t = time.perf_counter()
    try:
        while True:
            with lock:
                pending, commands[:] = list(commands), []
            for cmd in pending:
                if cmd == "quit":
                    return 0
                if cmd == "pause":
                    mode = "paused"
                    say("paused")
                elif cmd.startswith("measure"):
                    mode, todo = "measure", int(cmd.split()[1])
                    window = {"published": 0, "first_ns": None, "last_ns": None, "late_max_ms": 0.0}
                    next_t = time.perf_counter()
            if mode == "paused":
                time.sleep(0.01)
                continue
            now = time.perf_counter()
            if now < next_t:
                time.sleep(min(next_t - now, 0.01))
                continue
            late_ms = (now - next_t) * 1000.0
            next_t += period
            if next_t < now - period:   # far behind (warm-up start): do not burst
                next_t = now + period
            frame = frames[k % len(frames)]
            k += 1
            stamp = tfm.ns_to_stamp(time.time_ns())
            for key in ("pose", "rgb", "info", "instance", "depth"):
                frame[key].header.stamp = stamp
                pubs[key].publish(frame[key])
            if mode == "measure":
                ns = tfm.stamp_to_ns(stamp)
                window["published"] += 1
                window["first_ns"] = window["first_ns"] or ns
                window["last_ns"] = ns
                window["late_max_ms"] = max(window["late_max_ms"], late_ms)
                todo -= 1
                if window["published"] % int(5 * args.rate) == 0:
                    print(f"publisher: {window['published']} frames published in the window",
                          file=sys.stderr, flush=True)
                if todo == 0:
                    mode = "paused"
                    say("done " + json.dumps(window))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# =========================================================================== benchmark process


class _Child:
    """The publisher process with line-based commands and replies."""

    def __init__(self, args: argparse.Namespace):
        cmd = [sys.executable, "-m", "clusteringsdf_ros.bench_callbacks", "--publisher",
               "--rate", str(args.rate), "--width", str(args.width), "--height", str(args.height),
               "--loop-frames", str(args.loop_frames), "--image-qos", args.image_qos,
               "--namespace", args.namespace]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
                if line.startswith("error"):
                    raise RuntimeError(f"publisher: {line.strip()}")
            elif self.proc.poll() is not None:
                break
        raise RuntimeError(f"publisher: no '{prefix}' within {timeout} s (exit {self.proc.poll()})")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=10.0)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.terminate()
                self.proc.wait(timeout=10.0)


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"count": 0}
    a = np.asarray(values_ms)
    return {"count": len(a), "mean_ms": round(float(a.mean()), 3),
            "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3)}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from clusteringsdf_ros.mapping_node import MappingNode

    overrides = {**BENCH_CONFIG, "ros.pose_source": "pose_topic", "ros.image_qos": args.image_qos,
                 "ros.extract_period_s": args.extract_period, "ros.publish_period_s": 1.0,
                 "ros.status_period_s": 1.0, "ros.save_on_shutdown": False}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = MappingNode(context=context, namespace=args.namespace,
                       parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    latencies_ms: list[float] = []
    measuring = threading.Event()
    put = node.engine.put

    def timed_put(frame):  # publisher stamp (wall clock) -> frame queued for the trainer
        if measuring.is_set():
            latencies_ms.append((time.time_ns() - frame.stamp_s * _NS) / 1e6)
        put(frame)

    node.engine.put = timed_put
    executor = MultiThreadedExecutor(num_threads=4, context=context)   # as mapping_node.main()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    child = _Child(args)
    log = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        child.expect("ready", timeout=180.0)
        log("publisher ready; warming up until the trainer runs")
        deadline = time.monotonic() + args.warmup_timeout
        while node.engine.stats()["iteration"] < args.warmup_iterations:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trainer did not start within {args.warmup_timeout} s: "
                                   f"{node.status_values()}")
            time.sleep(0.2)
        child.send("pause")
        child.expect("paused", timeout=10.0)
        time.sleep(args.settle)
        base = _snapshot(node)
        for times in node.callback_times.values():
            times.clear()
        measuring.set()
        n = int(round(args.seconds * args.rate))
        log(f"trainer at iteration {base['iteration']}; measuring {n} frames at {args.rate} Hz")
        t0 = time.monotonic()
        child.send(f"measure {n}")
        memory: list[dict[str, float]] = []
        window_done = threading.Event()
        sampler = threading.Thread(target=sample_memory, daemon=True,
                                   args=(node, t0, args.sample_period, window_done, memory))
        sampler.start()
        window = json.loads(child.expect("done ", timeout=args.seconds * 3 + 60))
        wall_s = time.monotonic() - t0
        time.sleep(args.settle)
        measuring.clear()
        window_done.set()
        sampler.join(timeout=5.0)
        end = _snapshot(node)
        callbacks = {path: times.summary() for path, times in node.callback_times.items()}
    finally:
        child.close()
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    result = _report(args, n, window, wall_s, base, end, callbacks, latencies_ms)
    result["memory"] = memory_summary(memory)
    return result


def _snapshot(node) -> dict[str, Any]:
    stats = node.sync.sync.stats
    return {"counters": node.counters.snapshot(), "iteration": node.engine.stats()["iteration"],
            "received": {t: s.received for t, s in stats.per_topic.items()},
            "sync_dropped": {"late": stats.total("dropped_late"),
                             "overflow": stats.total("dropped_overflow"),
                             "unmatched": stats.total("dropped_unmatched")},
            "time": time.monotonic()}


def _report(args, n, window, wall_s, base, end, callbacks, latencies_ms) -> dict[str, Any]:
    diff = {k: end["counters"].get(k, 0) - base["counters"].get(k, 0) for k in end["counters"]}
    received = {t: end["received"][t] - base["received"][t] for t in end["received"]}
    sync_dropped = {k: end["sync_dropped"][k] - base["sync_dropped"][k] for k in end["sync_dropped"]}
    published = int(window["published"])
    span_s = (window["last_ns"] - window["first_ns"]) / _NS if published > 1 else 0.0
    lost_before_conversion = {
        "transport (per topic, published - received)": {t: published - r for t, r in received.items()},
        "sync": sync_dropped,
        **{k: diff.get(k, 0) for k in ("pose_unmatched", "out_of_order", "time_jump_back",
                                       "bad_encoding", "bad_image", "bad_camera_info",
                                       "size_mismatch", "bad_labels", "bad_pose")},
    }
    # Kept up: every set of messages that reached the node's subscriptions became a queued
    # frame. Messages DDS never handed to a callback (a best-effort reader keeps the last
    # `depth` messages: sensor_data QoS keeps 5, i.e. ~170 ms at 30 Hz when the executor
    # stalls) are transport losses, reported apart.
    delivered = min(received.values()) if received else 0
    kept_up = (diff.get("sets_received", 0) == delivered == diff.get("frames_enqueued", 0)
               and not any(sync_dropped.values())
               and all(v == 0 for k, v in lost_before_conversion.items() if isinstance(v, int)))
    period_ms = 1000.0 / args.rate
    synced, pose = callbacks["synced"], callbacks["pose"]
    busy_ms = synced["mean_ms"] + pose["mean_ms"]
    iterations = end["iteration"] - base["iteration"]
    return {
        "settings": {"seconds": args.seconds, "rate_hz": args.rate, "width": args.width,
                     "height": args.height, "image_qos": args.image_qos,
                     "model": BENCH_CONFIG, "cpu_count": os.cpu_count(),
                     "python": sys.version.split()[0]},
        "frames_published": published,
        "publisher_rate_hz": round((published - 1) / span_s, 2) if span_s > 0 else None,
        "publisher_late_max_ms": round(window["late_max_ms"], 2),
        "messages_received_per_topic": received,
        "pose_messages_received": callbacks["pose"]["count"],
        "sets_received": diff.get("sets_received", 0),
        "frames_enqueued": diff.get("frames_enqueued", 0),
        "lost_before_conversion": lost_before_conversion,
        "callbacks_kept_up": bool(kept_up),
        "all_published_frames_enqueued": diff.get("frames_enqueued", 0) == published,
        "trainer_queue_replaced_older_frames": diff.get("dropped_queue_full", 0),
        "frames_kept_as_keyframes": diff.get("frames_kept", 0),
        "frames_not_keyframe": diff.get("frames_not_keyframe", 0),
        "callback_ms": {"synced_set_incl_conversion": synced, "pose": pose},
        "callback_budget": {"frame_period_ms": round(period_ms, 3),
                            "mean_busy_ms_per_frame": round(busy_ms, 3),
                            "mean_share_of_period": round(busy_ms / period_ms, 3),
                            "p99_synced_share_of_period": round(synced["p99_ms"] / period_ms, 3)},
        "latency_stamp_to_enqueued_ms": _percentiles(latencies_ms),
        "trainer": {"iterations": iterations, "it_per_s": round(iterations / wall_s, 2),
                    "iteration_at_start": base["iteration"], "iteration_at_end": end["iteration"]},
        "window_wall_s": round(wall_s, 2),
    }


def markdown(result: dict[str, Any]) -> str:
    s, cb = result["settings"], result["callback_ms"]
    lost = result["lost_before_conversion"]
    transport = sum(lost["transport (per topic, published - received)"].values())
    sync = sum(lost["sync"].values())
    other = sum(v for v in lost.values() if isinstance(v, int))
    rows = [
        ("input", f"{s['width']}x{s['height']} rgb8 + 16UC1 depth + 16UC1 labels + camera_info + "
                  f"PoseStamped at {s['rate_hz']} Hz, {s['seconds']} s ({s['image_qos']} QoS)"),
        ("frames published", f"{result['frames_published']} (publisher at "
                             f"{result['publisher_rate_hz']} Hz)"),
        ("messages received per topic", ", ".join(f"{t} {n}" for t, n in
                                                  result["messages_received_per_topic"].items())
         + f", pose {result['pose_messages_received']}"),
        ("sets received (synchronised)", str(result["sets_received"])),
        ("frames enqueued (converted)", str(result["frames_enqueued"])),
        ("lost in DDS before any callback ran", f"{transport} messages (all topics)"),
        ("lost in the synchroniser / pose matching / bad input", f"{sync} / {other}"),
        ("**callbacks kept up** (every delivered set converted and queued)",
         "yes" if result["callbacks_kept_up"] else "NO"),
        ("every published frame queued for the trainer",
         "yes" if result["all_published_frames_enqueued"] else "no"),
        ("trainer queue replaced older frames", f"{result['trainer_queue_replaced_older_frames']} "
                                                "(drop-oldest by design: trainer slower than 30 Hz)"),
    ]
    for name, key in (("set callback incl. conversion", "synced_set_incl_conversion"),
                      ("pose callback", "pose")):
        c = cb[key]
        rows.append((f"{name} (ms)", f"n {c['count']}, mean {c['mean_ms']:.2f}, p50 {c['p50_ms']:.2f}, "
                                    f"p99 {c['p99_ms']:.2f}, max {c['max_ms']:.2f}"))
    b, lat, tr = result["callback_budget"], result["latency_stamp_to_enqueued_ms"], result["trainer"]
    rows += [
        ("callback share of the frame period", f"mean {b['mean_share_of_period']:.0%}, "
                                               f"p99 set {b['p99_synced_share_of_period']:.0%} "
                                               f"of {b['frame_period_ms']:.1f} ms"),
        ("latency stamp -> enqueued (ms)", f"p50 {lat.get('p50_ms', 0):.1f}, p99 {lat.get('p99_ms', 0):.1f}, "
                                           f"max {lat.get('max_ms', 0):.1f}"),
        ("trainer during the window", f"{tr['iterations']} iterations ({tr['it_per_s']} it/s), "
                                      f"{result['frames_kept_as_keyframes']} frames kept as key frames"),
    ]
    mem = result.get("memory") or {}
    if mem.get("samples"):
        rows.append(("resident memory of the node process (MiB)",
                     f"start {mem['rss_mb_start']:.0f}, peak {mem['rss_mb_peak']:.0f}, end "
                     f"{mem['rss_mb_end']:.0f}; peak growth first -> second half "
                     f"{mem['second_half_peak_growth_mb']} ({len(mem['samples'])} samples, "
                     f"{mem['key_frames_end']} key frames at the end)"))
    lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clusteringsdf_ros.bench_callbacks",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measured window (default 20)")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--image-qos", choices=("sensor_data", "reliable"), default="sensor_data",
                   help="QoS of the image topics, both sides (the node's ros.image_qos)")
    p.add_argument("--extract-period", type=float, default=1.0e6,
                   help="ros.extract_period_s (default: no extraction during the window)")
    p.add_argument("--loop-frames", type=int, default=120,
                   help="distinct frames rendered and replayed in a loop (one turn of the camera)")
    p.add_argument("--warmup-iterations", type=int, default=1,
                   help="trainer iterations before the measurement starts")
    p.add_argument("--warmup-timeout", type=float, default=300.0)
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds of pause before and after the window (in-flight messages)")
    p.add_argument("--sample-period", type=float, default=5.0,
                   help="seconds between resident-memory samples in the window (default 5)")
    p.add_argument("--plot", type=Path, default=None, help="draw the memory curve into this PNG")
    p.add_argument("--namespace", default=NAMESPACE)
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _dds_environment()
    if args.publisher:
        return run_publisher(args)
    result = run_benchmark(args)
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.plot is not None and result["memory"].get("samples"):
        plot_memory(result["memory"], args.plot)
    print(markdown(result))
    return 0 if result["callbacks_kept_up"] else 2


if __name__ == "__main__":
    raise SystemExit(main())
