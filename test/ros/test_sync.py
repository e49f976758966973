"""Approximate-time synchroniser: slop, queues, optional inputs, order, counters, threads."""

import threading
import time

import pytest

from clusteringsdf_ros.sync import ApproximateTimeSync, RosApproximateSync

MS = 1_000_000
REQ = ("rgb", "info", "inst")


def _sync(**kw):
    kw.setdefault("slop_s", 0.010)
    kw.setdefault("queue_size", 10)
    return ApproximateTimeSync(REQ, kw.pop("optional", ()), **kw)


def test_emits_when_every_required_topic_is_within_slop():
    sync = _sync()
    assert sync.add("rgb", 100 * MS, "rgb100") == []
    assert sync.add("info", 104 * MS, "info104") == []
    assert sync.add("inst", 108 * MS, "inst108") == [("rgb100", "info104", "inst108")]
    assert sync.pending() == {"rgb": 0, "info": 0, "inst": 0}
    stats = sync.stats
    assert stats.sets_emitted == 1 and stats.dropped == 0
    assert stats.total("received") == 3 and stats.total("emitted") == 3


def test_nothing_beyond_slop_and_the_stale_message_is_skipped_later():
    sync = _sync()
    sync.add("rgb", 100 * MS, "rgb100")
    sync.add("info", 100 * MS, "info100")
    assert sync.add("inst", 111 * MS, "inst111") == []  # 11 ms > 10 ms slop
    sync.add("rgb", 112 * MS, "rgb112")
    assert sync.add("info", 113 * MS, "info113") == [("rgb112", "info113", "inst111")]
    stats = sync.stats
    assert stats.per_topic["rgb"].dropped_unmatched == 1
    assert stats.per_topic["info"].dropped_unmatched == 1
    assert stats.per_topic["inst"].dropped_unmatched == 0


def test_slop_boundary_is_inclusive_and_zero_slop_needs_equal_stamps():
    sync = _sync(slop_s=0.010)
    sync.add("rgb", 0, "a")
    sync.add("info", 10 * MS, "b")
    assert sync.add("inst", 5 * MS, "c") == [("a", "b", "c")]
    exact = _sync(slop_s=0.0)
    exact.add("rgb", 5, "a")
    exact.add("info", 5, "b")
    assert exact.add("inst", 6, "c") == []
    assert exact.add("inst", 5, "d") == [("a", "b", "d")]


def test_sets_come_out_in_time_order_with_interleaved_arrivals():
    sync = _sync()
    out = []
    sync.register_callback(lambda *msgs: out.append(msgs))
    for k in range(5):  # each topic runs a frame ahead of the next one
        sync.add("rgb", (k + 1) * 100 * MS, f"rgb{k + 1}")
        sync.add("info", k * 100 * MS + 2 * MS, f"info{k}")
        sync.add("inst", k * 100 * MS + 3 * MS, f"inst{k}")
    assert out[:4] == [(f"rgb{k}", f"info{k}", f"inst{k}") for k in range(1, 5)]
    assert sync.stats.per_topic["info"].dropped_unmatched == 1  # frame 0 had no rgb


def test_queue_overflow_drops_the_oldest_and_counts():
    sync = _sync(queue_size=3)
    for k in range(5):
        sync.add("rgb", k * 100 * MS, f"rgb{k}")
    assert sync.pending()["rgb"] == 3
    assert sync.stats.per_topic["rgb"].dropped_overflow == 2
    sync.add("info", 0, "info0")
    assert sync.add("inst", 0, "inst0") == []  # rgb0 is gone
    sync.add("info", 200 * MS, "info2")
    assert sync.add("inst", 200 * MS, "inst2") == [("rgb2", "info2", "inst2")]


def test_out_of_order_messages_older_than_the_last_set_are_dropped_as_late():
    sync = _sync()
    for t in ("rgb", "info", "inst"):
        sync.add(t, 200 * MS, t)
    assert sync.stats.sets_emitted == 1
    assert sync.add("rgb", 100 * MS, "late") == []
    assert sync.add("inst", 200 * MS, "dup") == []  # the same stamp again is late too
    assert sync.stats.per_topic["rgb"].dropped_late == 1
    assert sync.stats.per_topic["inst"].dropped_late == 1
    assert sync.pending() == {"rgb": 0, "info": 0, "inst": 0}
    # An out-of-order arrival newer than the last set is fine.
    sync.add("rgb", 400 * MS, "rgb400")
    sync.add("rgb", 300 * MS, "rgb300")
    sync.add("info", 300 * MS, "info300")
    assert sync.add("inst", 300 * MS, "inst300") == [("rgb300", "info300", "inst300")]
    assert sync.pending()["rgb"] == 1


def test_optional_topic_is_attached_when_it_matches():
    sync = _sync(optional=("depth",))
    sync.add("depth", 101 * MS, "depth101")
    sync.add("rgb", 100 * MS, "rgb")
    sync.add("info", 100 * MS, "info")
    assert sync.add("inst", 100 * MS, "inst") == [("rgb", "info", "inst", "depth101")]


def test_optional_topic_waits_then_gives_up_by_stamps():
    sync = _sync(optional=("depth",), optional_wait_s=0.050)
    for t in REQ:
        sync.add(t, 100 * MS, t)
    assert sync.stats.sets_emitted == 0  # depth may still come
    out = sync.add("depth", 105 * MS, "depth105")  # late arrival, within slop: joins
    assert out == [("rgb", "info", "inst", "depth105")]
    for t in REQ:
        sync.add(t, 200 * MS, t + "200")
    assert sync.add("rgb", 240 * MS, "rgb240") == []  # 40 ms ahead: still waiting
    out = sync.add("rgb", 260 * MS, "rgb260")  # 60 ms > optional_wait: go without depth
    assert out == [("rgb200", "info200", "inst200", None)]


def test_optional_topic_that_moved_past_does_not_hold_the_set():
    sync = _sync(optional=("depth",), optional_wait_s=10.0)
    sync.add("depth", 100 * MS, "d100")
    for t in REQ:
        sync.add(t, 100 * MS, t)
    sync.add("depth", 300 * MS, "d300")  # depth frame 200 was lost
    for t in REQ[:2]:
        sync.add(t, 200 * MS, t)
    assert sync.add("inst", 200 * MS, "inst200") == [("rgb", "info", "inst200", None)]
    assert sync.stats.per_topic["depth"].emitted == 1
    sync.add("depth", 150 * MS, "late")  # older than the set emitted without it
    assert sync.stats.per_topic["depth"].dropped_late == 1


def test_optional_wait_zero_never_waits():
    sync = _sync(optional=("depth", "conf"), optional_wait_s=0.0)
    sync.add("conf", 100 * MS, "conf")
    for t in REQ:
        out = sync.add(t, 100 * MS, t)
    assert out == [("rgb", "info", "inst", None, "conf")]


def test_callback_and_return_value_agree_and_reset_forgets():
    got = []
    sync = ApproximateTimeSync(["a", "b"], callback=lambda *m: got.append(m), slop_s=0.0)
    sync.add("a", 1, 1)
    assert sync.add("b", 1, 2) == [(1, 2)] and got == [(1, 2)]
    sync.add("a", 0, "late")
    assert sync.stats.per_topic["a"].dropped_late == 1
    sync.reset()  # e.g. a bag started again from the beginning
    sync.add("a", 0, 3)
    assert sync.add("b", 0, 4) == [(3, 4)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="required"):
        ApproximateTimeSync([])
    with pytest.raises(ValueError, match="distinct"):
        ApproximateTimeSync(["a", "a"])
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(["a"], queue_size=0)
    with pytest.raises(KeyError, match="unknown topic 'x'"):
        ApproximateTimeSync(["a"]).add("x", 0, None)


def test_threads_feeding_topics_concurrently_lose_nothing():
    n_frames = 300
    sync = ApproximateTimeSync(REQ, ("depth",), queue_size=n_frames + 1, slop_s=0.005,
                               optional_wait_s=0.0)
    got = []
    sync.register_callback(lambda *msgs: got.append(msgs))
    start = threading.Barrier(4)

    def feed(topic):
        start.wait()
        for k in range(n_frames):
            sync.add(topic, k * 33 * MS, (topic, k))
            if k % 50 == 0:
                time.sleep(0)

    threads = [threading.Thread(target=feed, args=(t,)) for t in REQ + ("depth",)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = sync.stats
    assert stats.sets_emitted == len(got)
    ks = [msgs[0][1] for msgs in got]
    assert ks == sorted(ks) and len(set(ks)) == len(ks)
    for msgs in got:  # every set holds one frame's messages
        assert {m[1] for m in msgs if m is not None} == {msgs[0][1]}
    # Each thread feeds in order, so every frame of the required topics is emitted.
    assert len(got) == n_frames
    assert stats.total("received") == 4 * n_frames
    assert stats.total("dropped_overflow") == 0


# --------------------------------------------------------------------------- rclpy adapter


def _image(stamp_ns: int, frame: str):
    from sensor_msgs.msg import Image

    msg = Image(height=1, width=1, encoding="mono8", step=1, data=[stamp_ns // MS % 256])
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame
    return msg


def _run_adapter(ros_context, prefer_message_filters: bool):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node = rclpy.create_node("test_sync_adapter", context=ros_context)
    got = []
    adapter = RosApproximateSync(node, {"sync_test/rgb": Image, "sync_test/info": CameraInfo},
                                 lambda rgb, info: got.append((rgb, info)), qos=qos,
                                 slop_s=0.01, prefer_message_filters=prefer_message_filters)
    pub_rgb = node.create_publisher(Image, "sync_test/rgb", qos)
    pub_info = node.create_publisher(CameraInfo, "sync_test/info", qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    deadline = time.monotonic() + 20.0  # a failure bound for discovery, not a speed check
    while (pub_rgb.get_subscription_count() < 1 or pub_info.get_subscription_count() < 1) \
            and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    for k in range(3):
        stamp = 1_000_000_000 + k * 100 * MS
        pub_rgb.publish(_image(stamp, "cam"))
        info = CameraInfo()
        info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp + 2 * MS, 1_000_000_000)
        pub_info.publish(info)
    while len(got) < 3 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    executor.shutdown()
    adapter.destroy(node)
    node.destroy_node()
    return adapter, got


def test_rclpy_adapter_fallback_synchronises_live_topics(ros_context):
    adapter, got = _run_adapter(ros_context, prefer_message_filters=False)
    assert not adapter.uses_message_filters
    assert len(got) == 3
    for k, (rgb, info) in enumerate(got):
        assert rgb.header.stamp.nanosec == k * 100 * MS
        assert info.header.stamp.nanosec == k * 100 * MS + 2 * MS
    assert adapter.sync.stats.sets_emitted == 3


def test_rclpy_adapter_with_message_filters(ros_context):
    pytest.importorskip("message_filters", reason="message_filters is not installed "
                        "(PyPI ROS wheels)")
    adapter, got = _run_adapter(ros_context, prefer_message_filters=True)
    assert adapter.uses_message_filters
    assert len(got) == 3


# --------------------------------------------------------------------------- time jumps back


def test_jump_back_beyond_the_limit_resets_and_starts_the_new_timeline():
    sync = _sync(jump_back_s=1.0)
    for t in REQ:
        sync.add(t, 100_000 * MS, t + "100")
    sync.add("info", 100_050 * MS, "info100.05")       # queued, never completes a set
    assert sync.add("rgb", 99_500 * MS, "late") == []  # 0.5 s back: still a late drop
    assert sync.stats.per_topic["rgb"].dropped_late == 1 and sync.stats.jumps_back == 0
    # The bag starts again: 90 s back on rgb resets every queue and keeps the message.
    assert sync.add("rgb", 10_000 * MS, "rgb10") == []
    assert sync.stats.jumps_back == 1 and sync.stats.per_topic["rgb"].dropped_late == 1
    assert sync.pending() == {"rgb": 1, "info": 0, "inst": 0}   # the old info is gone
    sync.add("info", 10_000 * MS, "info10")   # no jump for these: their queues were reset
    assert sync.add("inst", 10_000 * MS, "inst10") == [("rgb10", "info10", "inst10")]
    assert sync.stats.jumps_back == 1
    assert sync.add("rgb", 9_500 * MS, "late2") == []          # small steps back stay late
    assert sync.stats.per_topic["rgb"].dropped_late == 2


def test_without_jump_back_limit_old_stamps_stay_late_forever():
    sync = _sync()
    for t in REQ:
        sync.add(t, 100_000 * MS, t)
    for t in REQ:
        assert sync.add(t, 10_000 * MS, t) == []
    assert sync.stats.total("dropped_late") == 3 and sync.stats.jumps_back == 0
    with pytest.raises(ValueError, match="jump_back_s"):
        _sync(jump_back_s=0.0)


def test_rclpy_adapter_reset_and_jump_back_with_the_builtin_synchroniser(ros_context):
    import rclpy
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    node = rclpy.create_node("test_sync_reset", context=ros_context)
    got = []
    try:
        adapter = RosApproximateSync(node, {"r/rgb": Image, "r/info": CameraInfo},
                                     lambda *m: got.append(m), qos=QoSProfile(depth=10),
                                     prefer_message_filters=False, jump_back_s=1.0)
        assert adapter.sync.jump_back_ns == 1_000_000_000
        adapter.sync.add("r/rgb", 5 * MS, "a")
        adapter.reset()
        assert adapter.sync.pending() == {"r/rgb": 0, "r/info": 0}
        adapter.sync.add("r/rgb", 7 * MS, "b")
        adapter.sync.add("r/info", 7 * MS, "c")
        assert got == [("b", "c")]
        adapter.destroy(node)
    finally:
        node.destroy_node()


class _Msg:
    def __init__(self, stamp):
        self.stamp = stamp


class _FakeMessageFilters:
    """The shape of message_filters that reset() relies on: ``queues`` of {stamp: msg},
    a non-reentrant ``lock`` held while the callback runs, and the delivered set
    deleted from the queues after the callback returns."""

    class Subscriber:
        def __init__(self, node, msg_type, topic, **kwargs):
            self.callbacks = []

        def registerCallback(self, callback, *args):
            self.callbacks.append((callback, args))

        def signal(self, msg):
            for callback, args in self.callbacks:
                callback(msg, *args)

    class ApproximateTimeSynchronizer:
        def __init__(self, fs, queue_size, slop):
            self.lock = threading.Lock()
            self.queues = [{} for _ in fs]
            self.callbacks = []
            for f, q in zip(fs, self.queues):
                f.registerCallback(self.add, q)

        def registerCallback(self, callback):
            self.callbacks.append(callback)

        def add(self, msg, my_queue):
            assert self.lock.acquire(timeout=5.0), "deadlock: the lock was taken twice"
            try:
                my_queue[msg.stamp] = msg
                common = set.intersection(*[set(q) for q in self.queues])
                for t in sorted(common):
                    msgs = [q[t] for q in self.queues]
                    for callback in self.callbacks:
                        callback(*msgs)
                    for q in self.queues:
                        del q[t]   # KeyError if reset() removed the delivered set
                    break
            finally:
                self.lock.release()


def test_rclpy_adapter_reset_with_message_filters_inside_and_outside_the_callback(monkeypatch):
    from clusteringsdf_ros import sync as sync_module

    monkeypatch.setattr(sync_module, "_message_filters", lambda: _FakeMessageFilters)
    got = []

    def callback(a, b):
        got.append((a.stamp, b.stamp))
        if len(got) == 1:
            adapter.reset()   # from inside the callback, as the mapping node does on a jump

    adapter = RosApproximateSync(None, {"a": object, "b": object}, callback, qos=None)
    assert adapter.uses_message_filters and adapter.sync is None
    sub_a, sub_b = adapter._subscriptions
    sub_a.signal(_Msg(1))
    sub_a.signal(_Msg(3))      # queued: cleared by the reset inside the callback
    sub_b.signal(_Msg(1))
    assert got == [(1, 1)]
    assert [dict(q) for q in adapter._mf_sync.queues] == [{}, {}]
    sub_b.signal(_Msg(3))      # its partner was cleared: nothing
    assert got == [(1, 1)]
    adapter.reset()            # from outside: takes the lock
    assert [dict(q) for q in adapter._mf_sync.queues] == [{}, {}]
    sub_a.signal(_Msg(5))
    sub_b.signal(_Msg(5))
    assert got == [(1, 1), (5, 5)]
