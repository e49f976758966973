"""A trained ClusteringSDF model as a :class:`~clusteringsdf_core.bench.prediction.ScenePrediction`.

2D labels at any pose: the argmax over channels of the rendered object opacities
(channel 0 = background, instance 0). Each object channel's class is the most
frequent machine class of its rays during training (instance mode) or its index
(semantic mode). Background pixels get a stuff class from the height of their
rendered surface point: floor near the lowest surface the training views saw, ceiling
near the highest, wall elsewhere (the instance model has no stuff classes of its
own). Snapshots without those heights (no depth) use the scene bounds, which only
works when the bounds are tight to floor and ceiling: an online map's estimated
bounds carry margins, and with them every floor and ceiling pixel of the bench scene
was called wall (docs/ONLINE.md).

3D: the shells of :func:`~clusteringsdf_core.extract.extract_objects` (the scene
surface split by object; closed meshes would add contact faces that lie inside the
GT solids), each vertex labelled with its object's instance id, for 3D instance AP
and geometry metrics.

A channel that the extraction split into separate parts (``extract.split_channels``)
is one instance per part in 2D as well: a pixel of that channel takes the part
nearest to its rendered surface point, so the label maps and the meshes agree.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.extract import ExtractedObject, extract_objects
from clusteringsdf_core.geometry.camera import backproject
from clusteringsdf_core.training import Snapshot

__all__ = ["NeuralLabelRenderer", "PartLookup", "model_prediction"]


class PartLookup:
    """Instance ids and classes of the parts of split channels, looked up by position.

    Built from one extraction's objects; a channel with several parts
    (:attr:`ExtractedObject.part`) maps each surface point to its nearest part's
    :attr:`~ExtractedObject.instance_id` and class. Channels with one part are left alone.
    """

    def __init__(self, objects: list[ExtractedObject]):
        by_channel: dict[int, list[ExtractedObject]] = {}
        for o in objects:
            by_channel.setdefault(o.channel, []).append(o)
        self.channels: dict[int, tuple[cKDTree, np.ndarray, np.ndarray]] = {}
        for k, parts in by_channel.items():
            if len(parts) < 2:
                continue
            sizes = [len(o.surface.vertices) for o in parts]
            ids = np.repeat([o.instance_id for o in parts], sizes).astype(np.int32)
            classes = np.repeat([o.class_id for o in parts], sizes).astype(np.int32)
            tree = cKDTree(np.concatenate([np.asarray(o.surface.vertices) for o in parts]))
            self.channels[k] = (tree, ids, classes)

    def apply(self, channel: np.ndarray, points: np.ndarray, instance: np.ndarray,
              semantic: np.ndarray) -> None:
        """Overwrite ``instance`` and ``semantic`` (like ``channel``, (H, W)) in place where
        ``channel`` is a split channel, from the world ``points`` (H, W, 3) of the pixels."""
        for k, (tree, ids, classes) in self.channels.items():
            mask = channel == k
            if mask.any():
                nearest = tree.query(points[mask])[1]
                instance[mask], semantic[mask] = ids[nearest], classes[nearest]


#: The floor and ceiling bands of rendered background, as a share of the height between
#: floor and ceiling (:class:`NeuralLabelRenderer`): 0.15 m in the bench's 2.7 m rooms.
STUFF_BAND_SHARE = 0.15 / 2.7


class NeuralLabelRenderer:
    """Renders (semantic, instance) label maps of a model snapshot at a frame's pose."""

    def __init__(self, snapshot: Snapshot, classes: ClassTable, *, device: str | torch.device = "cpu",
                 resolution: tuple[int, int] | None = None, stuff_band_m: float | None = None):
        self.model = snapshot.model(device)
        self.device = device
        self.classes = classes
        self.channel_classes = snapshot.channel_classes
        self.resolution = resolution
        self.mode = snapshot.config.trainer.mode
        if snapshot.surface_heights is not None:
            self.floor_z, self.ceiling_z = snapshot.surface_heights
        else:
            bounds = np.asarray(snapshot.box_state["bounds_m"])
            self.floor_z = bounds[0, 2] + snapshot.config.render.bounds_padding_m
            self.ceiling_z = bounds[1, 2] - snapshot.config.render.bounds_padding_m
        # background within this of the floor / ceiling height is floor / ceiling: a share
        # of the height between them (0.15 m of a 2.7 m room), so a scene's stuff bands
        # follow its size, whatever the scene lengths' factor
        self.stuff_band_m = (STUFF_BAND_SHARE * max(self.ceiling_z - self.floor_z, 0.0)
                             if stuff_band_m is None else stuff_band_m)
        names = {c.name for c in classes.classes}
        self.stuff_ids = {n: classes.id_of(n) for n in ("floor", "wall", "ceiling") if n in names}
        self._parts: PartLookup | None = None

    def set_parts(self, objects: list[ExtractedObject]) -> None:
        """Render the channels that ``objects`` split into several parts as one instance
        (and class) per part (:class:`PartLookup`)."""
        self._parts = PartLookup(objects)

    def render(self, frame: Frame, *, rgb: bool = True) -> dict[str, np.ndarray]:
        width, height = self.resolution or (frame.width, frame.height)
        K = frame.intrinsics.scaled(width, height).K
        out = self.model.render_opacity_image(torch.as_tensor(K, dtype=torch.float32, device=self.device),
                                              torch.as_tensor(frame.T_world_cam, dtype=torch.float32,
                                                              device=self.device), width, height, rgb=rgb)
        return {k: v.cpu().numpy() for k, v in out.items()}

    def __call__(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(semantic, instance) label maps at the frame's own size."""
        import cv2

        semantic, instance, _ = self.labels_and_depth(frame)
        if semantic.shape != (frame.height, frame.width):
            size = (frame.width, frame.height)
            semantic = cv2.resize(semantic, size, interpolation=cv2.INTER_NEAREST)
            instance = cv2.resize(instance, size, interpolation=cv2.INTER_NEAREST)
        return semantic, instance

    def labels_and_depth(self, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(semantic, instance, z-depth in metres) at the render resolution (``resolution``,
        else the frame's size), from one rendering."""
        out = self.render(frame, rgb=False)
        channel = out["opacity"].argmax(-1).astype(np.int32)
        if self.mode == "semantic":
            semantic, instance = channel, np.zeros_like(channel)
        else:
            instance = channel.copy()
            semantic = self.channel_classes[channel].astype(np.int32)
            points = self._surface_points(frame, out["depth"])
            semantic[channel == 0] = self._stuff_classes(points)[channel == 0]
            if self._parts is not None:
                self._parts.apply(channel, points, instance, semantic)
        return semantic, instance, out["depth"]

    @staticmethod
    def _surface_points(frame: Frame, depth: np.ndarray) -> np.ndarray:
        """(H, W, 3) world points of the rendered surface (``depth``: z-depth, metres)."""
        h, w = depth.shape
        K = frame.intrinsics.scaled(w, h)
        v, u = np.mgrid[0:h, 0:w]
        return backproject(u + 0.5, v + 0.5, depth, K, frame.T_world_cam)

    def _stuff_classes(self, points: np.ndarray) -> np.ndarray:
        z = points[..., 2]
        out = np.full(z.shape, self.stuff_ids.get("wall", 0), np.int32)
        out[z < self.floor_z + self.stuff_band_m] = self.stuff_ids.get("floor", 0)
        out[z > self.ceiling_z - self.stuff_band_m] = self.stuff_ids.get("ceiling", 0)
        return out


def model_prediction(snapshot: Snapshot, classes: ClassTable, *, method: str = "clusteringsdf",
                     extract: bool = True, device: str | torch.device = "cpu",
                     render_resolution: tuple[int, int] | None = None) -> ScenePrediction:
    """A ScenePrediction backed by neural rendering (2D) and extracted meshes (3D)."""
    renderer = NeuralLabelRenderer(snapshot, classes, device=device, resolution=render_resolution)
    mesh, vertex_instance = None, None
    instance_class, instance_score = {}, {}
    objects = []
    if extract:
        # The background channel's surface is part of the reconstruction (geometry metrics)
        # and carries instance 0.
        parts = extract_objects(renderer.model, snapshot.config.extract, snapshot.channel_classes,
                                snapshot.channel_confidence, include_background=True,
                                class_votes=snapshot.class_votes)
        objects = [o for o in parts if o.channel != 0]
        renderer.set_parts(objects)
        if parts:
            mesh = trimesh.util.concatenate([o.surface for o in parts])
            vertex_instance = np.concatenate([np.full(len(o.surface.vertices), o.instance_id, np.int32)
                                              for o in parts])
    for k in range(1, snapshot.config.model.num_channels):
        instance_class[k] = int(snapshot.channel_classes[k])
        instance_score[k] = float(snapshot.channel_confidence[k])
    for o in objects:
        instance_class[o.instance_id] = o.class_id
        instance_score[o.instance_id] = o.confidence
    return ScenePrediction(method=method, mesh=mesh, vertex_instance=vertex_instance,
                           instance_class=instance_class, instance_score=instance_score,
                           instance_solid={o.instance_id: (o.volume, o.watertight) for o in objects},
                           renderer=renderer, meta={"iteration": snapshot.iteration,
                                                    "objects": len(objects)})
