"""The ``main()`` of the nodes: init, spin a multi-threaded executor until Ctrl-C or
SIGTERM (or until the node's own ``run`` says it is done), and shut down cleanly (the
node's ``destroy_node`` does its own shutdown work, e.g. the mapping node saves its map,
the bag player stops its thread)."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

__all__ = ["spin_node"]

N = TypeVar("N", bound=Node)


def _spin_forever(executor: MultiThreadedExecutor, node: Node) -> int:
    executor.spin()
    return 0


def spin_node(make_node: Callable[[], N], name: str, *, num_threads: int, args=None,
              run: Callable[[MultiThreadedExecutor, N], int] = _spin_forever) -> int:
    """Run the node ``make_node()`` builds: ``run(executor, node)`` spins it (default:
    until a signal) and returns the exit code. 0 on a clean stop or a signal, 1 when it
    cannot start (a bad parameter, a missing model file: the reason goes to stderr)."""
    rclpy.init(args=args)
    node = None
    executor = None
    code = 0
    try:
        executor = MultiThreadedExecutor(num_threads=num_threads)
        node = make_node()
        executor.add_node(node)
        code = run(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        if rclpy.ok():  # else a signal shut the context down while it was busy
            print(f"{name}: {exc}", file=sys.stderr)
            code = 1
    finally:
        if node is not None:
            node.destroy_node()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown()
    return code
