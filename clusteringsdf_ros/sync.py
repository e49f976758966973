"""Approximate-time synchronisation of the mapping node's inputs, without ROS.

:class:`ApproximateTimeSync` follows the semantics of message_filters'
``ApproximateTimeSynchronizer`` (a queue per input, ``queue_size``, ``slop``) and
adds what the mapping node needs:

- **required and optional inputs**: a set is emitted once every *required* input
  (e.g. rgb, camera_info, instance labels) has a message within ``slop`` of the
  others. An *optional* input (e.g. depth) joins the set with its message that
  lies within ``slop`` of every member; when it has none, the set waits until
  that input has moved past the set (a newer message arrived) or until a required
  input is more than ``optional_wait_s`` ahead of the set (stamps, not wall time),
  then goes out with ``None``. ``optional_wait_s = 0`` never waits.
- **order**: sets are emitted in time order, the earliest complete set first.
  Messages older than what a topic contributed to an emitted set are dropped (and
  counted as unmatched); a message that arrives out of order, older than that,
  is dropped on arrival (counted as late).
- **time jumps back**: with ``jump_back_s`` set, a message more than that older than
  what its topic already contributed to a set is not dropped as late: the stamps
  restarted (a looping bag player), so every queue is cleared (:meth:`reset`), the
  jump is counted (``SyncStats.jumps_back``) and the message starts the new timeline.
  Smaller steps back stay late drops. ``None`` (default) never resets.
- **clock-free and injectable**: ``add(topic, stamp_ns, msg)`` returns the sets it
  completed (tuples in topic order) and calls the callback with them; nothing
  reads a clock, so tests drive it with plain integers.
- **thread-safe**: one re-entrant lock around the state; callbacks run under it,
  in emission order (keep them short: convert and enqueue).

:class:`RosApproximateSync` wires it to rclpy subscriptions, or uses
message_filters where that is importable and every input is required, with the
same callback signature ``callback(*msgs)``.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["ApproximateTimeSync", "SyncStats", "RosApproximateSync"]

_NS = 1_000_000_000


@dataclass
class _TopicStats:
    received: int = 0
    emitted: int = 0
    dropped_overflow: int = 0     # pushed out of a full queue
    dropped_late: int = 0         # arrived older than what the topic already emitted
    dropped_unmatched: int = 0    # skipped: older than a set that was emitted without it


@dataclass
class SyncStats:
    """Counters of a synchroniser (copies; totals and per topic)."""

    sets_emitted: int = 0
    per_topic: dict[str, _TopicStats] = field(default_factory=dict)
    jumps_back: int = 0           # resets after a jump back of more than jump_back_s

    def total(self, name: str) -> int:
        """Sum of one counter (``received``, ``dropped_late``, ...) over the topics."""
        return sum(getattr(s, name) for s in self.per_topic.values())

    @property
    def dropped(self) -> int:
        return (self.total("dropped_overflow") + self.total("dropped_late")
                + self.total("dropped_unmatched"))


class _Queue:
    """Messages of one topic sorted by stamp (ties keep arrival order)."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.msgs: list[Any] = []
        self.newest_seen: int | None = None
        self.last_emitted: int | None = None

    def insert(self, stamp: int, msg: Any) -> None:
        i = bisect.bisect_right(self.stamps, stamp)
        self.stamps.insert(i, stamp)
        self.msgs.insert(i, msg)
        if self.newest_seen is None or stamp > self.newest_seen:
            self.newest_seen = stamp

    def pop_front(self, count: int) -> None:
        del self.stamps[:count]
        del self.msgs[:count]

    def in_range(self, lo: int, hi: int) -> range:
        """Indices of messages with lo <= stamp <= hi."""
        return range(bisect.bisect_left(self.stamps, lo), bisect.bisect_right(self.stamps, hi))


class ApproximateTimeSync:
    """Groups messages of several topics whose stamps lie within ``slop`` of each other.

    ``required``: topics that every set contains; ``optional``: topics attached when
    they have a matching message (else ``None``). Emitted sets are tuples in the
    order ``required + optional``. ``queue_size`` messages are kept per topic (the
    oldest is dropped beyond that). ``jump_back_s``: a message older than its topic's
    last emitted one by more than this resets the queues and is kept (None: never).
    """

    def __init__(self, required: Sequence[str], optional: Sequence[str] = (), *,
                 queue_size: int = 10, slop_s: float = 0.02, optional_wait_s: float = 0.5,
                 callback: Callable[..., Any] | None = None, jump_back_s: float | None = None):
        self.required = tuple(required)
        self.optional = tuple(optional)
        self.topics = self.required + self.optional
        if not self.required:
            raise ValueError("an approximate-time synchroniser needs at least one required topic")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError(f"topics must be distinct, got {list(self.topics)}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s >= 0 or not optional_wait_s >= 0:
            raise ValueError(f"slop_s and optional_wait_s must be >= 0, got {slop_s}, "
                             f"{optional_wait_s}")
        if jump_back_s is not None and not jump_back_s > 0:
            raise ValueError(f"jump_back_s must be > 0 or None, got {jump_back_s}")
        self.jump_back_ns = None if jump_back_s is None else int(round(jump_back_s * _NS))
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop_s * _NS))
        self.optional_wait_ns = int(round(optional_wait_s * _NS))
        self._callbacks: list[Callable[..., Any]] = [callback] if callback else []
        self._lock = threading.RLock()
        self._queues = {t: _Queue() for t in self.topics}
        self._stats = SyncStats(per_topic={t: _TopicStats() for t in self.topics})

    # ------------------------------------------------------------------ public API

    def register_callback(self, callback: Callable[..., Any]) -> None:
        """``callback(*msgs)`` is called with every emitted set (topic order)."""
        with self._lock:
            self._callbacks.append(callback)

    def add(self, topic: str, stamp_ns: int, msg: Any) -> list[tuple]:
        """Queue ``msg`` of ``topic`` stamped ``stamp_ns``; return the sets it completed."""
        if topic not in self._queues:
            raise KeyError(f"unknown topic {topic!r}; this synchroniser has {list(self.topics)}")
        stamp_ns = int(stamp_ns)
        with self._lock:
            queue, stats = self._queues[topic], self._stats.per_topic[topic]
            stats.received += 1
            if queue.last_emitted is not None and stamp_ns <= queue.last_emitted:
                if self.jump_back_ns is None or queue.last_emitted - stamp_ns <= self.jump_back_ns:
                    stats.dropped_late += 1
                    return []
                # The stamps restarted (a bag loop): forget the old timeline, keep this one.
                self.reset()
                self._stats.jumps_back += 1
                queue = self._queues[topic]
            queue.insert(stamp_ns, msg)
            if len(queue.stamps) > self.queue_size:
                queue.pop_front(len(queue.stamps) - self.queue_size)
                stats.dropped_overflow += 1
            emitted = []
            while (found := self._find_set()) is not None:
                emitted.append(self._emit(found))
            for msgs in emitted:
                for callback in self._callbacks:
                    callback(*msgs)
            return emitted

    def reset(self) -> None:
        """Forget every queued message and what was emitted (e.g. after a time jump back)."""
        with self._lock:
            self._queues = {t: _Queue() for t in self.topics}

    @property
    def stats(self) -> SyncStats:
        """A snapshot of the counters."""
        with self._lock:
            return SyncStats(self._stats.sets_emitted,
                             {t: _TopicStats(**vars(s)) for t, s in self._stats.per_topic.items()},
                             self._stats.jumps_back)

    def pending(self) -> dict[str, int]:
        """Messages waiting per topic."""
        with self._lock:
            return {t: len(q.stamps) for t, q in self._queues.items()}

    # ------------------------------------------------------------------ matching

    def _find_set(self) -> dict[str, int | None] | None:
        """Indices (per topic) of the earliest complete set, or None to wait."""
        queues = self._queues
        if any(not queues[t].stamps for t in self.required):
            return None
        # Anchors in time order: the earliest message of any required topic that
        # starts a window [anchor, anchor + slop] holding a message of every required topic.
        anchors = sorted((s, t) for t in self.required for s in queues[t].stamps)
        for anchor, anchor_topic in anchors:
            chosen: dict[str, int | None] = {}
            for t in self.required:
                idx = queues[t].in_range(anchor, anchor + self.slop_ns)
                if not idx:
                    break
                chosen[t] = idx[0]
            else:
                return self._attach_optional(chosen)
        return None

    def _attach_optional(self, chosen: dict[str, int | None]) -> dict[str, int | None] | None:
        queues = self._queues
        stamps = [queues[t].stamps[i] for t, i in chosen.items()]
        lo, hi = min(stamps), max(stamps)
        centre = (lo + hi) / 2
        newest_required = max(queues[t].stamps[-1] for t in self.required)
        for t in self.optional:
            q = queues[t]
            idx = q.in_range(hi - self.slop_ns, lo + self.slop_ns)
            if idx:
                chosen[t] = min(idx, key=lambda i: abs(q.stamps[i] - centre))
                continue
            moved_past = q.newest_seen is not None and q.newest_seen > lo + self.slop_ns
            waited = self.optional_wait_ns == 0 or newest_required > hi + self.optional_wait_ns
            if not (moved_past or waited):
                return None  # a matching message may still come
            chosen[t] = None
        return chosen

    def _emit(self, chosen: dict[str, int | None]) -> tuple:
        msgs = []
        lo = min(self._queues[t].stamps[i] for t, i in chosen.items() if i is not None)
        for t in self.topics:
            q, stats = self._queues[t], self._stats.per_topic[t]
            i = chosen[t]
            if i is None:
                msgs.append(None)
                # Nothing this old can join a later set (later sets start after lo).
                stale = bisect.bisect_right(q.stamps, lo - self.slop_ns)
                stats.dropped_unmatched += stale
                q.pop_front(stale)
                horizon = lo - self.slop_ns
                q.last_emitted = horizon if q.last_emitted is None else max(q.last_emitted, horizon)
                continue
            msgs.append(q.msgs[i])
            q.last_emitted = q.stamps[i]
            stats.emitted += 1
            stats.dropped_unmatched += i
            q.pop_front(i + 1)
        self._stats.sets_emitted += 1
        return tuple(msgs)


# --------------------------------------------------------------------------- rclpy adapter


def _header_stamp_ns(msg) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def _clear_queues(queues, keep: Sequence[Any]) -> None:
    """Empty message_filters' queues ({stamp: msg} per input) except the messages in ``keep``."""
    for queue in queues:
        for stamp in [s for s, m in queue.items() if not any(m is k for k in keep)]:
            del queue[stamp]


def _message_filters():
    try:
        import message_filters
        return message_filters
    except ImportError:
        return None


class RosApproximateSync:
    """Subscribes ``node`` to ``topics`` and calls ``callback(*msgs)`` with synchronised sets.

    ``topics`` maps topic name -> message class, in callback order; the names in
    ``optional`` are optional inputs (``None`` in the callback when missing).
    Uses message_filters' ``ApproximateTimeSynchronizer`` where it is importable,
    ``prefer_message_filters`` is true and no input is optional; otherwise plain
    subscriptions feed an :class:`ApproximateTimeSync` (``self.sync``, with its
    counters). Stamps come from each message's ``header.stamp``. ``jump_back_s`` goes
    to :class:`ApproximateTimeSync` (message_filters never drops old stamps as late).
    :meth:`reset` forgets the queued messages, also from inside ``callback``.
    """

    def __init__(self, node, topics: Mapping[str, type], callback: Callable[..., Any], *,
                 qos, optional: Sequence[str] = (), queue_size: int = 10, slop_s: float = 0.02,
                 optional_wait_s: float = 0.5, prefer_message_filters: bool = True,
                 callback_group=None, jump_back_s: float | None = None):
        names = list(topics)
        unknown = [t for t in optional if t not in topics]
        if unknown:
            raise ValueError(f"optional topics {unknown} are not among the topics {names}")
        required = [t for t in names if t not in optional]
        order = required + [t for t in names if t in optional]
        mf = _message_filters() if prefer_message_filters and not optional else None
        self.uses_message_filters = mf is not None
        self.sync: ApproximateTimeSync | None = None
        self._mf_sync = None
        self._delivering = threading.local()   # the set being handed to callback, per thread
        self._subscriptions = []
        if mf is not None:
            subs = [mf.Subscriber(node, topics[t], t, qos_profile=qos,
                                  callback_group=callback_group) for t in names]
            self._mf_sync = mf.ApproximateTimeSynchronizer(subs, queue_size, slop_s)

            def deliver(*msgs):  # remembers the set so that reset() inside callback keeps it
                self._delivering.msgs = msgs
                try:
                    callback(*msgs)
                finally:
                    self._delivering.msgs = None

            self._mf_sync.registerCallback(deliver)
            self._subscriptions = subs
            return
        position = [order.index(t) for t in names]

        def reorder(*msgs):  # internal order (required first) -> the caller's order
            callback(*(msgs[p] for p in position))

        self.sync = ApproximateTimeSync(required, [t for t in names if t in optional],
                                        queue_size=queue_size, slop_s=slop_s,
                                        optional_wait_s=optional_wait_s, callback=reorder,
                                        jump_back_s=jump_back_s)
        for t in names:
            self._subscriptions.append(node.create_subscription(
                topics[t], t, lambda msg, t=t: self.sync.add(t, _header_stamp_ns(msg), msg), qos,
                callback_group=callback_group))

    def reset(self) -> None:
        """Forget every queued message (e.g. after the input stamps jumped back).

        Safe from inside the callback: message_filters calls it holding its
        (non-reentrant) lock and then deletes the delivered set from its queues, so
        there the delivered messages stay queued and the lock is not taken again."""
        if self.sync is not None:
            self.sync.reset()
            return
        mf_sync = self._mf_sync
        if mf_sync is None:
            return
        delivering = getattr(self._delivering, "msgs", None)
        if delivering is not None:
            _clear_queues(mf_sync.queues, keep=delivering)
        else:
            with mf_sync.lock:
                _clear_queues(mf_sync.queues, keep=())

    def destroy(self, node) -> None:
        """Remove the subscriptions from ``node``."""
        for sub in self._subscriptions:
            if hasattr(sub, "sub"):  # message_filters.Subscriber
                node.destroy_subscription(sub.sub)
            else:
                node.destroy_subscription(sub)
        self._subscriptions = []
