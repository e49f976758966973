"""Baselines that need no neural field: a TSDF mesh plus classical grouping.

Every baseline is ``baseline(dataset, config, mesh=None) -> ScenePrediction``; the
mesh is the TSDF reconstruction of the training frames (``config.tsdf``) unless one
is passed (to share one reconstruction between baselines).

- :func:`felzenszwalb_mesh`: Felzenszwalb-Huttenlocher graph segmentation of the mesh
  (the idea of ScanNet's "segmentator"; UnScene3D Table 1's Felzenszwalb baseline).
- :func:`hdbscan_points`: HDBSCAN on voxel-downsampled mesh vertices with xyz, scaled
  normals and optionally colour (UnScene3D Table 1's HDBSCAN baseline).
- :func:`naive_fusion`: the machine 2D instance ids projected onto the mesh and
  majority-voted per vertex *as if they were consistent across views*. They are
  not, so this fails by design: it is the problem ClusteringSDF solves.

Semantics and scores (all baselines): every mesh vertex is projected into every
training view, kept where it passes a depth test against the frame's depth, and votes
for the machine semantic label (``Frame.semantic``) of its pixel; void votes are
ignored. A predicted instance's class is the majority of its vertices' votes; an
instance whose class is stuff (wall/floor/ceiling) becomes instance 0. A vertex of
instance 0 keeps its own majority class as ``vertex_semantic``. Scores: for the
segmentation baselines the share of the instance's semantic votes that agree with its
class ("vote agreement"; when no view has semantic labels, a size proxy
``min(1, vertices / 1000)``); for naive fusion the mean over its vertices of the
share of their instance votes won by the winning id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.config import Section, param
from clusteringsdf_core.config.lengths import REFERENCE_SIDE_M, length_factor
from clusteringsdf_core.config.schema import scale_lengths
from clusteringsdf_core.data.frame import Frame
from clusteringsdf_core.geometry.camera import project
from clusteringsdf_core.recon.tsdf import TSDFConfig, reconstruct_mesh

__all__ = ["FelzenszwalbConfig", "HDBSCANConfig", "NaiveFusionConfig", "felzenszwalb_mesh",
           "hdbscan_points", "naive_fusion", "VertexObservations", "observe_vertices",
           "felzenszwalb_segments", "ransac_planes", "scene_mesh", "for_scene"]

_DEFAULT_TSDF = TSDFConfig(voxel_size_m=0.03)


def _length_scale_param():
    return param(0.0, "factor on the lengths that follow the scene's size (the TSDF voxel and "
                 "margin, depth tolerances, downsampling, plane distance, feature weights in "
                 "metres): 0 = derived from the scene bounds as the trainer's data.length_scale "
                 "is (1 for scenes of 4 m and more); 1 = as written", min=0.0)


def for_scene(config, dataset):
    """``config`` with its scene lengths scaled for ``dataset`` (clusteringsdf_core.config.lengths)."""
    factor = length_factor(config.length_scale, dataset.bounds, REFERENCE_SIDE_M)
    return scale_lengths(config, factor).replace(length_scale=1.0)


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class FelzenszwalbConfig(Section):
    """Felzenszwalb-Huttenlocher segmentation of the TSDF mesh graph."""

    name: ClassVar[str] = "felzenszwalb"

    tsdf: TSDFConfig = param(_DEFAULT_TSDF, "TSDF reconstruction of the training frames")
    length_scale: float = _length_scale_param()
    k: float = param(2.0, "merge threshold constant: components C1, C2 merge over an edge of "
                     "weight w when w <= Int(Ci) + k / |Ci| for both (|C| in vertices, so the "
                     "right k grows with mesh density; 2.0 suits 3-4 cm TSDF meshes)", min=0.0)
    min_segment_vertices: int = param(100, "segments with fewer vertices are merged into a "
                                      "neighbour (in edge-weight order)", min=1)
    convexity_tweak: bool = param(True, "square the weight of convex edges (they rarely "
                                  "separate objects), as in ScanNet's segmentator")
    depth_tolerance_m: float = param(0.05, "a vertex is seen in a view when its depth is within "
                                     "this of the frame's depth", min=0.0, min_exclusive=True,
                                     scene_length=True)
    stuff_to_zero: bool = param(True, "segments whose majority machine class is stuff get "
                                "instance 0")


@dataclass(frozen=True)
class HDBSCANConfig(Section):
    """HDBSCAN on the TSDF mesh vertices (voxel-downsampled)."""

    name: ClassVar[str] = "hdbscan"

    tsdf: TSDFConfig = param(_DEFAULT_TSDF, "TSDF reconstruction of the training frames")
    length_scale: float = _length_scale_param()
    downsample_m: float = param(0.05, "voxel size of the point downsampling before clustering "
                                "(0 = cluster every vertex)", min=0.0, scene_length=True)
    min_cluster_size: int = param(30, "HDBSCAN min_cluster_size, in downsampled points", min=2)
    min_samples: int = param(10, "HDBSCAN min_samples (density smoothing)", min=1)
    normal_weight: float = param(0.1, "scale of the unit normals in the feature vector "
                                 "(metres per unit normal difference)", min=0.0, scene_length=True)
    color_weight: float = param(0.0, "scale of the RGB colour in [0, 1] in the feature vector "
                                "(metres per unit colour difference)", min=0.0, scene_length=True)
    stuff_removal: str = param("semantic", "how walls/floors are removed before clustering: "
                               "'semantic' = vertices whose majority machine class is stuff, "
                               "'planes' = large horizontal/vertical RANSAC planes, 'none'",
                               choices=("semantic", "planes", "none"))
    plane_distance_m: float = param(0.03, "RANSAC inlier distance", min=0.0, min_exclusive=True,
                                    scene_length=True)
    plane_min_fraction: float = param(0.08, "a plane is stuff when it holds at least this "
                                      "share of the points", min=0.0, max=1.0)
    max_planes: int = param(8, "at most this many RANSAC planes", min=0)
    ransac_iterations: int = param(200, "RANSAC hypotheses per plane", min=1)
    depth_tolerance_m: float = param(0.05, "depth-test tolerance of vertex projection", min=0.0,
                                     min_exclusive=True, scene_length=True)
    stuff_to_zero: bool = param(True, "clusters whose majority machine class is stuff get "
                                "instance 0")
    seed: int = param(0, "RANSAC random seed")


@dataclass(frozen=True)
class NaiveFusionConfig(Section):
    """Per-vertex majority vote of raw (view-inconsistent) machine instance ids."""

    name: ClassVar[str] = "naive_fusion"

    tsdf: TSDFConfig = param(_DEFAULT_TSDF, "TSDF reconstruction of the training frames")
    length_scale: float = _length_scale_param()
    depth_tolerance_m: float = param(0.05, "depth-test tolerance of vertex projection", min=0.0,
                                     min_exclusive=True, scene_length=True)
    min_votes: int = param(1, "vertices seen in fewer views get instance 0", min=1)
    min_instance_vertices: int = param(20, "instances with fewer vertices become 0", min=0)
    stuff_to_zero: bool = param(True, "instances whose majority machine class is stuff get "
                                "instance 0")


# --------------------------------------------------------------------------- shared parts


def scene_mesh(dataset, tsdf: TSDFConfig, mesh=None):
    """``mesh`` when given, else the TSDF mesh of ``dataset.train`` over ``dataset.bounds``."""
    if mesh is not None:
        return mesh
    return reconstruct_mesh(dataset.train, tsdf, bounds=dataset.bounds)


@dataclass
class VertexObservations:
    """Every (vertex, view) pair where a vertex is seen, with the labels of its pixel."""

    vertex: np.ndarray     # (N,) int64 vertex index
    view: np.ndarray       # (N,) int32 index into the frames
    semantic: np.ndarray   # (N,) int32 machine class (0 where the frame has none)
    instance: np.ndarray   # (N,) int64 raw machine instance id (0 where none)
    n_vertices: int
    n_views: int


def observe_vertices(vertices: np.ndarray, frames: Sequence[Frame],
                     depth_tolerance_m: float = 0.05) -> VertexObservations:
    """Project ``vertices`` (V, 3) world into each frame; keep those in the image with
    ``|z - depth(pixel)| <= depth_tolerance_m`` (a depth test against the frame's depth,
    which handles occlusion), and read the frame's machine labels there."""
    vertices = np.asarray(vertices, dtype=np.float64)
    out = {"vertex": [], "view": [], "semantic": [], "instance": []}
    n_views = 0
    for view, frame in enumerate(frames):
        n_views += 1
        if frame.depth_m is None:
            raise ValueError(f"frame {frame.index}: vertex projection needs depth")
        K, T = frame.intrinsics, np.asarray(frame.T_world_cam, dtype=np.float64)
        cam = (vertices - T[:3, 3]) @ T[:3, :3]
        z = cam[:, 2]
        u, v, front = project(cam, K)
        ok = front & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)
        vid = np.flatnonzero(ok)
        d = frame.depth_m[v[vid], u[vid]]
        seen = (d > 0) & (np.abs(d - z[vid]) <= depth_tolerance_m)
        vid = vid[seen]
        pu, pv = u[vid], v[vid]
        out["vertex"].append(vid)
        out["view"].append(np.full(len(vid), view, dtype=np.int32))
        out["semantic"].append(frame.semantic[pv, pu].astype(np.int32) if frame.semantic is not None
                               else np.zeros(len(vid), dtype=np.int32))
        out["instance"].append(frame.instance[pv, pu].astype(np.int64) if frame.instance is not None
                               else np.zeros(len(vid), dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in out.items()}
    return VertexObservations(cat["vertex"].astype(np.int64), cat["view"].astype(np.int32),
                              cat["semantic"].astype(np.int32), cat["instance"].astype(np.int64),
                              len(vertices), n_views)


def _semantic_counts(obs: VertexObservations, n_classes: int) -> np.ndarray:
    """(V, n_classes) non-void semantic votes per vertex (column 0 stays 0)."""
    keep = (obs.semantic > 0) & (obs.semantic < n_classes)
    flat = obs.vertex[keep] * n_classes + obs.semantic[keep]
    return np.bincount(flat, minlength=obs.n_vertices * n_classes).reshape(obs.n_vertices, n_classes)


def _group_sum(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, C) sums of the rows of ``values`` (V, C) per group id in [0, n_groups)."""
    out = np.zeros((n_groups, values.shape[1]), dtype=np.float64)
    for c in range(values.shape[1]):
        out[:, c] = np.bincount(groups, weights=values[:, c], minlength=n_groups)
    return out


def _finish(method: str, mesh, vertex_group: np.ndarray, sem_counts: np.ndarray, classes,
            *, stuff_to_zero: bool, group_scores: np.ndarray | None = None,
            meta: dict | None = None) -> ScenePrediction:
    """Turn per-vertex groups (0 = none, 1..G) into a ScenePrediction: class by vote,
    stuff groups -> 0, ids renumbered 1..N, scores (see the module docstring)."""
    vertex_group = np.asarray(vertex_group, dtype=np.int64)
    n_groups = int(vertex_group.max(initial=0)) + 1
    per_group = _group_sum(vertex_group, sem_counts, n_groups)         # (G, C)
    totals = per_group.sum(axis=1)
    group_class = per_group.argmax(axis=1)
    group_class[totals == 0] = 0
    agreement = np.where(totals > 0, per_group.max(axis=1) / np.maximum(totals, 1), 0.0)
    sizes = np.bincount(vertex_group, minlength=n_groups)
    if group_scores is None:
        group_scores = agreement if sem_counts.sum() > 0 else np.minimum(1.0, sizes / 1000.0)

    is_thing = classes.is_thing_lut()
    keep = sizes > 0
    keep[0] = False
    if stuff_to_zero:
        stuffish = (group_class > 0) & ~is_thing[np.clip(group_class, 0, len(is_thing) - 1)]
        keep &= ~stuffish
    new_id = np.zeros(n_groups, dtype=np.int32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    vertex_instance = new_id[vertex_group]

    own_class = sem_counts.argmax(axis=1).astype(np.int32)
    own_class[sem_counts.sum(axis=1) == 0] = 0
    vertex_semantic = np.where(vertex_instance > 0, group_class[vertex_group], own_class).astype(np.int32)
    kept = np.flatnonzero(keep)
    return ScenePrediction(
        method=method, mesh=mesh, vertex_instance=vertex_instance,
        instance_class={int(new_id[g]): int(group_class[g]) for g in kept},
        instance_score={int(new_id[g]): float(group_scores[g]) for g in kept},
        vertex_semantic=vertex_semantic, meta=dict(meta or {}))


def _mesh_meta(mesh, t_start: float) -> dict:
    return {"tsdf": dict(mesh.metadata.get("tsdf", {})), "vertices": int(len(mesh.vertices)),
            "reconstruct_s": time.perf_counter() - t_start}


# --------------------------------------------------------------------------- Felzenszwalb


def felzenszwalb_segments(vertices: np.ndarray, normals: np.ndarray, edges: np.ndarray, *,
                          k: float, min_size: int, convexity_tweak: bool = True) -> np.ndarray:
    """(V,) segment id (0..S-1) of each vertex: Felzenszwalb-Huttenlocher on the graph
    ``edges`` (E, 2) with weights ``1 - n_i . n_j`` (squared on convex edges when
    ``convexity_tweak``), then small segments merged along the lightest edges."""
    vertices = np.asarray(vertices, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    n = len(vertices)
    a, b = edges[:, 0], edges[:, 1]
    w = np.clip(1.0 - np.einsum("ij,ij->i", normals[a], normals[b]), 0.0, 2.0)
    if convexity_tweak:
        # convex where the neighbour's normal points away from this vertex
        convex = np.einsum("ij,ij->i", vertices[b] - vertices[a], normals[b]) > 0
        w = np.where(convex, w * w, w)
    order = np.argsort(w, kind="stable")
    ea, eb, ew = a[order].tolist(), b[order].tolist(), w[order].tolist()

    parent = list(range(n))
    size = [1] * n
    thresh = [float(k)] * n              # Int(C) + k / |C|, Int = 0 for a single vertex

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, wt in zip(ea, eb, ew):
        ri, rj = find(i), find(j)
        if ri == rj or wt > thresh[ri] or wt > thresh[rj]:
            continue
        if size[ri] < size[rj]:
            ri, rj = rj, ri
        parent[rj] = ri
        size[ri] += size[rj]
        thresh[ri] = wt + k / size[ri]   # edges come sorted: wt is the new Int(C)
    for i, j in zip(ea, eb):
        ri, rj = find(i), find(j)
        if ri != rj and (size[ri] < min_size or size[rj] < min_size):
            if size[ri] < size[rj]:
                ri, rj = rj, ri
            parent[rj] = ri
            size[ri] += size[rj]
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int64)


def felzenszwalb_mesh(dataset, config: FelzenszwalbConfig = FelzenszwalbConfig(), *,
                      mesh=None) -> ScenePrediction:
    """Felzenszwalb-Huttenlocher segmentation of the TSDF mesh; stuff segments -> 0."""
    t0 = time.perf_counter()
    config = for_scene(config, dataset)
    mesh = scene_mesh(dataset, config.tsdf, mesh)
    meta = _mesh_meta(mesh, t0)
    t1 = time.perf_counter()
    segments = felzenszwalb_segments(mesh.vertices, mesh.vertex_normals, mesh.edges_unique,
                                     k=config.k, min_size=config.min_segment_vertices,
                                     convexity_tweak=config.convexity_tweak)
    t2 = time.perf_counter()
    obs = observe_vertices(mesh.vertices, dataset.train, config.depth_tolerance_m)
    counts = _semantic_counts(obs, len(dataset.classes))
    pred = _finish("felzenszwalb_mesh", mesh, segments + 1, counts, dataset.classes,
                   stuff_to_zero=config.stuff_to_zero,
                   meta={**meta, "segment_s": t2 - t1, "segments": int(segments.max(initial=-1) + 1)})
    pred.meta["total_s"] = time.perf_counter() - t0
    return pred


# --------------------------------------------------------------------------- HDBSCAN


def ransac_planes(points: np.ndarray, *, distance_m: float, min_points: int, max_planes: int,
                  iterations: int, seed: int = 0, max_tilt_cos: float = 0.1) -> np.ndarray:
    """(P,) bool: points on large horizontal or vertical planes, found greedily by RANSAC.

    A plane (the best of ``iterations`` 3-point hypotheses) is accepted when it has at
    least ``min_points`` inliers within ``distance_m`` and its normal is within
    ``max_tilt_cos`` of vertical (|n_z| >= 1 - max_tilt_cos) or of horizontal
    (|n_z| <= max_tilt_cos); its inliers are removed and the search repeats.
    """
    rng = np.random.default_rng(seed)
    points = np.asarray(points, dtype=np.float64)
    on_plane = np.zeros(len(points), dtype=bool)
    for _ in range(max_planes):
        rest = np.flatnonzero(~on_plane)
        if len(rest) < max(3, min_points):
            break
        p = points[rest]
        tri = rng.integers(0, len(rest), size=(iterations, 3))
        n = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
        norm = np.linalg.norm(n, axis=1)
        good = norm > 1e-9
        n = n[good] / norm[good, None]
        origin = p[tri[good, 0]]
        nz = np.abs(n[:, 2])
        axis_aligned = (nz >= 1.0 - max_tilt_cos) | (nz <= max_tilt_cos)
        n, origin = n[axis_aligned], origin[axis_aligned]
        if len(n) == 0:
            continue
        # inlier counts of all hypotheses, in chunks to bound memory
        offset = np.einsum("hj,hj->h", origin, n)
        chunks = np.array_split(np.arange(len(n)), max(1, len(n) * len(p) // 4_000_000))
        counts = np.concatenate([(np.abs(p @ n[c].T - offset[c]) <= distance_m).sum(axis=0)
                                 for c in chunks])
        best = int(np.argmax(counts))
        if counts[best] < min_points:
            break
        dist = np.abs((p - origin[best]) @ n[best])
        on_plane[rest[dist <= distance_m]] = True
    return on_plane


def _voxel_groups(points: np.ndarray, voxel_m: float) -> tuple[np.ndarray, int]:
    """(P,) voxel group of each point and the number of groups (each point its own when 0)."""
    if voxel_m <= 0:
        return np.arange(len(points)), len(points)
    keys = np.floor(points / voxel_m).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max(initial=-1)) + 1


def hdbscan_points(dataset, config: HDBSCANConfig = HDBSCANConfig(), *, mesh=None) -> ScenePrediction:
    """HDBSCAN on voxel-downsampled mesh vertices (xyz, scaled normals, optional colour);
    stuff removed first (``config.stuff_removal``), noise -> instance 0."""
    from sklearn.cluster import HDBSCAN

    t0 = time.perf_counter()
    config = for_scene(config, dataset)
    mesh = scene_mesh(dataset, config.tsdf, mesh)
    meta = _mesh_meta(mesh, t0)
    t1 = time.perf_counter()
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    obs = observe_vertices(vertices, dataset.train, config.depth_tolerance_m)
    counts = _semantic_counts(obs, len(dataset.classes))

    candidate = np.ones(len(vertices), dtype=bool)
    if config.stuff_removal == "semantic":
        own = counts.argmax(axis=1)
        has_vote = counts.sum(axis=1) > 0
        candidate &= ~(has_vote & ~dataset.classes.is_thing_lut()[own])

    cand = np.flatnonzero(candidate)
    group, n_groups = _voxel_groups(vertices[cand], config.downsample_m)
    size = np.maximum(np.bincount(group, minlength=n_groups), 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(group, weights=values[:, c], minlength=n_groups)
                         for c in range(values.shape[1])], axis=1) / size[:, None]

    xyz = mean(vertices[cand])
    nrm = mean(normals[cand])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
    if config.stuff_removal == "planes" and n_groups > 0:
        plane = ransac_planes(xyz, distance_m=config.plane_distance_m,
                              min_points=max(3, int(config.plane_min_fraction * n_groups)),
                              max_planes=config.max_planes, iterations=config.ransac_iterations,
                              seed=config.seed)
    else:
        plane = np.zeros(n_groups, dtype=bool)
    features = [xyz, config.normal_weight * nrm]
    colors = getattr(mesh.visual, "vertex_colors", None)
    if config.color_weight > 0 and colors is not None and len(colors) == len(vertices):
        features.append(config.color_weight * mean(np.asarray(colors)[cand, :3] / 255.0))
    features = np.concatenate(features, axis=1)

    point_label = np.full(n_groups, -1, dtype=np.int64)
    keep = np.flatnonzero(~plane)
    if len(keep) >= max(config.min_cluster_size, config.min_samples + 1):
        clusterer = HDBSCAN(min_cluster_size=config.min_cluster_size,
                            min_samples=config.min_samples, copy=True)
        point_label[keep] = clusterer.fit_predict(features[keep])
    vertex_group = np.zeros(len(vertices), dtype=np.int64)
    vertex_group[cand] = point_label[group] + 1          # noise (-1) -> 0
    t2 = time.perf_counter()
    pred = _finish("hdbscan_points", mesh, vertex_group, counts, dataset.classes,
                   stuff_to_zero=config.stuff_to_zero,
                   meta={**meta, "cluster_s": t2 - t1, "points": int(n_groups),
                         "plane_points": int(plane.sum())})
    pred.meta["total_s"] = time.perf_counter() - t0
    return pred


# --------------------------------------------------------------------------- naive fusion


def naive_fusion(dataset, config: NaiveFusionConfig = NaiveFusionConfig(), *,
                 mesh=None) -> ScenePrediction:
    """Per-vertex majority vote of the raw machine instance ids over the training views,
    taken as if the ids were consistent across views (they are not: fails by design).
    Votes for id 0 (no instance) count; the winning raw id is the instance."""
    t0 = time.perf_counter()
    config = for_scene(config, dataset)
    mesh = scene_mesh(dataset, config.tsdf, mesh)
    meta = _mesh_meta(mesh, t0)
    t1 = time.perf_counter()
    obs = observe_vertices(mesh.vertices, dataset.train, config.depth_tolerance_m)
    counts = _semantic_counts(obs, len(dataset.classes))
    n_vertices = obs.n_vertices

    ids, id_index = np.unique(obs.instance, return_inverse=True)
    id_index = id_index.reshape(-1)
    votes = np.bincount(obs.vertex * len(ids) + id_index,
                        minlength=n_vertices * max(len(ids), 1)).reshape(n_vertices, max(len(ids), 1))
    total = votes.sum(axis=1)
    winner = votes.argmax(axis=1)
    vertex_raw = ids[winner] if len(ids) else np.zeros(n_vertices, dtype=np.int64)
    vertex_raw = np.where(total >= config.min_votes, vertex_raw, 0)
    share = np.where(total > 0, votes.max(axis=1) / np.maximum(total, 1), 0.0)

    # raw ids -> groups 1..G (group = one raw id value across the whole scene)
    raw_ids, group = np.unique(vertex_raw, return_inverse=True)
    group = group.reshape(-1) + (0 if raw_ids[0] == 0 else 1)
    sizes = np.bincount(group)
    group = np.where(sizes[group] >= config.min_instance_vertices, group, 0)
    n_groups = int(group.max(initial=0)) + 1
    mean_share = np.bincount(group, weights=share, minlength=n_groups) / np.maximum(
        np.bincount(group, minlength=n_groups), 1)
    t2 = time.perf_counter()
    pred = _finish("naive_fusion", mesh, group, counts, dataset.classes,
                   stuff_to_zero=config.stuff_to_zero, group_scores=mean_share,
                   meta={**meta, "vote_s": t2 - t1, "raw_ids": int(len(raw_ids))})
    pred.meta["total_s"] = time.perf_counter() - t0
    return pred
