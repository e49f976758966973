"""The mapping node's map services: ``~/save_map``, ``~/load_map``, ``~/reset`` and
``~/extract_now``, and where saved maps go (``ros.output_dir``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from std_srvs.srv import Trigger

from clusteringsdf_ros import transforms as tfm
from clusteringsdf_ros.srv import LoadMap

__all__ = ["MapServices", "output_root"]


def _expanded(path: str) -> Path:
    """``path`` with ``~`` and environment variables expanded."""
    return Path(os.path.expanduser(os.path.expandvars(path)))


def output_root(ros) -> Path:
    """``ros.output_dir``, expanded."""
    return _expanded(ros.output_dir)


class MapServices:
    """The services of ``node`` (a :class:`~clusteringsdf_ros.mapping_node.MappingNode`),
    in ``callback_group``; what they do is the engine's."""

    def __init__(self, node, callback_group):
        self.node = node
        #: why ``ros.initial_map`` could not be loaded ('' = loaded, or none set)
        self.initial_map_error = ""
        node.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=callback_group)
        node.create_service(Trigger, "~/reset", self._on_reset, callback_group=callback_group)
        node.create_service(Trigger, "~/extract_now", self._on_extract_now, callback_group=callback_group)
        node.create_service(LoadMap, "~/load_map", self._on_load_map, callback_group=callback_group)

    def output_folder(self) -> Path:
        """A new timestamped folder name under ``ros.output_dir`` for a saved map."""
        base = output_root(self.node.ros) / time.strftime("map_%Y%m%d_%H%M%S")
        path, n = base, 1
        while path.exists():
            path, n = Path(f"{base}_{n}"), n + 1
        return path

    def save_map(self) -> Path:
        return self.node.engine.save(self.output_folder())

    def load(self, path: str) -> tuple[bool, str]:
        """(loaded, message). A map that cannot be read changes nothing and is logged; for
        ``ros.initial_map`` it stays in the status (``initial_map_error``)."""
        node = self.node
        initial = path == node.ros.initial_map
        try:
            loaded = node.engine.load_map(_expanded(path))
        except Exception as exc:
            message = f"map not loaded from {path}: {type(exc).__name__}: {exc}"
            node.get_logger().error(message)
            if initial:
                self.initial_map_error = message
            return False, message
        if initial:
            self.initial_map_error = ""
        return True, (f"map loaded from {loaded['path']}: iteration {loaded['iteration']}, "
                      f"{loaded['views']} key frames, objects {loaded['objects']}")

    def _on_save_map(self, request, response):
        try:
            path = self.save_map()
            response.success, response.message = True, str(path)
            self.node.get_logger().info(f"map saved to {path}")
        except Exception as exc:
            response.success, response.message = False, f"map not saved: {exc}"
        return response

    def _on_load_map(self, request, response):
        path = request.path or self.node.ros.initial_map
        if not path:
            response.success, response.message = False, "no path given and ros.initial_map is empty"
            return response
        response.success, response.message = self.load(path)
        if response.success:
            self.node.publish_objects()
        return response

    def _on_reset(self, request, response):
        node = self.node
        try:
            node.engine.reset().result(timeout=30.0)
            node.pending_reset.clear()
            node.restart_timeline()
            # The old objects leave the planning scene now, not at the next extraction.
            node.counters.inc("collision_operations", node.planner.remove_all(
                tfm.header(node.get_clock().now().nanoseconds, node.ros.map_frame)))
            response.success = True
            response.message = ("model reset: a new one is trained from the next frames with the "
                                "current parameters; object ids keep counting")
        except Exception as exc:
            response.success, response.message = False, f"reset failed: {exc}"
        return response

    def _on_extract_now(self, request, response):
        try:
            result = self.node.engine.extract_now(timeout=120.0)
            response.success = True
            response.message = (f"{len(result.objects)} objects at iteration {result.iteration} "
                                f"(ids {[t.id for t in result.objects]})")
            self.node.publish_objects()
        except Exception as exc:
            response.success, response.message = False, str(exc)
        return response
