"""The ``bag_player`` node: replays a rosbag2 (sqlite3 or mcap) where ``ros2 bag`` is absent.

Parameters: ``bag_path`` (string, required), ``rate`` (double, 1.0), ``loop``
(bool, false), ``start_offset_s`` (double, 0.0), ``remap`` (string array of
'from:=to'), ``topics`` (string array; empty = all), ``wait_for_subscribers_s``
(double, 0.0: how long to wait for subscribers before playing), ``wait_for_topics``
(string array: topics that must each have a subscriber first; ``'topic:N'``: at least
N), ``publish_clock``
(bool, false: ``/clock`` at the recorded times, for nodes with ``use_sim_time``).

    python -m clusteringsdf_ros.bag_player_node --ros-args -p bag_path:=/tmp/scene_bag -p rate:=2.0

The node exits when the bag has been played (unless looping), on Ctrl-C, or on
SIGTERM (background processes of non-interactive shells ignore SIGINT).
"""

from __future__ import annotations

import threading

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from clusteringsdf_ros.bags import BagPlayer
from clusteringsdf_ros.node_main import spin_node

__all__ = ["BagPlayerNode", "main"]


class BagPlayerNode(Node):
    """Declares the parameters, builds a :class:`BagPlayer` and plays it on a thread."""

    def __init__(self, **kwargs):
        super().__init__("bag_player", **kwargs)

        def declare(name, default, description):
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        bag_path = declare("bag_path", "", "rosbag2 folder to play")
        rate = declare("rate", 1.0, "playback speed factor (2.0 = twice as fast)")
        loop = declare("loop", False, "start again at the end of the bag")
        start_offset_s = declare("start_offset_s", 0.0, "skip that many seconds of the bag")
        # An empty list would be typed BYTE_ARRAY: declare string arrays by type (unset = None).
        remap = declare("remap", Parameter.Type.STRING_ARRAY, "topic remappings 'from:=to'")
        topics = declare("topics", Parameter.Type.STRING_ARRAY, "bag topics to play (unset = all)")
        wait_s = declare("wait_for_subscribers_s", 0.0,
                         "wait up to this long for subscribers before playing")
        wait_for_topics = declare("wait_for_topics", Parameter.Type.STRING_ARRAY,
                                  "output topics that must each have a subscriber before playing (within "
                                  "wait_for_subscribers_s; 'topic:N' = at least N; unset = none)")
        publish_clock = declare("publish_clock", False, "publish /clock (rosgraph_msgs/Clock) at the bag's "
                                "recorded times, for nodes with use_sim_time")
        if not bag_path:
            raise ValueError("parameter bag_path is required")
        self.player = BagPlayer(bag_path, self, rate=rate, loop=loop,
                                start_offset_s=start_offset_s, remap=list(remap or []),
                                topics=list(topics or []) or None, wait_for_subscribers_s=wait_s,
                                wait_for_topics=list(wait_for_topics or []),
                                publish_clock=publish_clock,
                                logger=self.get_logger().warning)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self.get_logger().info(f"playing {bag_path} at rate {rate} "
                               f"({', '.join(self.player.output_topics)})")
        self.thread.start()

    def _play(self) -> None:
        try:
            stats = self.player.play()
            if not stats.stopped:  # after a stop the context may be gone
                self.get_logger().info(f"played: {stats.published}")
        except BaseException as exc:  # reported by main()
            if self.context.ok():  # else a shutdown (SIGTERM) made publishing fail: no error
                self.error = exc

    def shutdown(self) -> None:
        self.player.stop()
        self.thread.join(timeout=5.0)
        self.player.close()

    def destroy_node(self) -> None:
        self.shutdown()
        super().destroy_node()


def _play_to_the_end(executor, node: BagPlayerNode) -> int:
    while node.thread.is_alive():  # raises ExternalShutdownException on SIGTERM
        executor.spin_once(timeout_sec=0.1)
    if node.error is not None:
        node.get_logger().error(str(node.error))
        return 1
    return 0


def main(args=None) -> int:
    """Run the node until the bag has been played; 0 on success or a signal, 1 on an error
    (a bad parameter or an unreadable bag: the reason goes to stderr)."""
    return spin_node(BagPlayerNode, "bag_player", num_threads=1, args=args, run=_play_to_the_end)


if __name__ == "__main__":
    raise SystemExit(main())
