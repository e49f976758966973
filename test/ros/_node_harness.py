"""Shared by the node tests: a node under test and a helper node (publishers of its
inputs, subscribers of its outputs) spun by a MultiThreadedExecutor on a thread."""

import threading
import time


class SpunNodes:
    """Subclasses set ``self.node`` and ``self.helper``, then call :meth:`spin`; they
    define :meth:`describe` for the timeout message."""

    def spin(self, context) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.helper)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
        self.helper.destroy_node()

    def describe(self):
        return ""

    def wait_for(self, predicate, timeout, what, poll_s=0.02):
        """``predicate()``'s first truthy value within ``timeout`` seconds, else AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll_s)
        raise AssertionError(f"timed out waiting for {what}; status: {self.describe()}")
