"""The registry of benchmarked methods: a name -> how to run it on one scene.

A :class:`Method` is data: a name, a one-line description, what it needs from a
scene, and ``run(dataset, options) -> ScenePrediction``. ``options`` is a plain dict
(:class:`MethodOptions` lists the keys every method should understand, all optional):

- ``config``: overrides of the method's config, a nested mapping of field names
  (``{"k": 3.0, "tsdf": {"voxel_size_m": 0.04}}``); unknown fields raise ConfigError;
- ``time_budget_s``: wall-clock budget of a slow (trained) method, None = its default;
- ``device``: torch device of a neural method ("cpu", "cuda", ...), None = its choice;
- ``seed``: the method's own random seed;
- ``progress``: ``progress(fraction in [0, 1], message)``, for long runs to report to
  the harness's progress bar (a method may also use tqdm itself);
- ``cache``: a :class:`MeshCache` shared by the methods of one benchmark run.

The three no-network baselines (``felzenszwalb``, ``hdbscan``, ``naive_fusion``) are
registered here and share one TSDF mesh per scene through the cache: the mesh depends
only on the training depth and poses, so it is also shared between the label
variants of one scene (see :func:`geometry_source`). A baseline that reuses a mesh
built by another one records the build time in ``prediction.meta["reused_s"]``; the
harness adds it to the method's seconds so that every baseline is timed as if it ran
alone.

Neural methods (ClusteringSDF and its ablations) register the same way, either from a
module listed in :data:`OPTIONAL_METHOD_MODULES` (imported on the first registry
lookup; an ImportError there, e.g. no torch, is kept and reported when such a method
is asked for) or by calling :func:`register_method` before the benchmark runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypedDict

import numpy as np

from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.config import ConfigError, Section

__all__ = ["Method", "MethodOptions", "MeshCache", "register_method", "unregister_method",
           "get_method", "method_names", "methods", "apply_overrides", "geometry_source",
           "missing_needs", "KNOWN_NEEDS", "OPTIONAL_METHOD_MODULES"]

#: What a method may need from a scene (checked by :func:`missing_needs`):
#: ``depth`` (training frames with depth), ``instance_labels`` (training frames with
#: machine instance ids), ``semantic_labels`` (machine class ids), ``torch`` (importable),
#: ``cuda`` (a CUDA device visible to torch).
KNOWN_NEEDS = ("depth", "instance_labels", "semantic_labels", "torch", "cuda")

#: Modules that register more methods when imported (e.g. the neural field and its
#: ablations). Imported once, on the first lookup; an ImportError is recorded, not raised.
OPTIONAL_METHOD_MODULES: list[str] = ["clusteringsdf_core.bench.neural", "clusteringsdf_core.bench.online"]

ProgressFn = Callable[[float, str], None]


class MethodOptions(TypedDict, total=False):
    """The keys of the ``options`` dict a method receives (module docstring)."""

    config: Mapping[str, Any]
    time_budget_s: float | None
    device: str | None
    seed: int
    progress: ProgressFn | None
    cache: "MeshCache"


@dataclass(frozen=True)
class Method:
    """One benchmarked method (module docstring)."""

    name: str
    description: str
    run: Callable[[Any, dict], ScenePrediction]
    needs: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)   # e.g. {"paper_row": "..."}

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " ,/"):
            raise ValueError(f"method name {self.name!r} must be non-empty, without spaces, "
                             "commas or slashes")
        unknown = sorted(set(self.needs) - set(KNOWN_NEEDS))
        if unknown:
            raise ValueError(f"method {self.name}: unknown needs {unknown}; known: {list(KNOWN_NEEDS)}")
        object.__setattr__(self, "needs", tuple(self.needs))


_REGISTRY: dict[str, Method] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_LOCK = threading.Lock()
_loaded_optional = False


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry; a second method of the same name raises unless
    ``replace``. Returns the method (so it can be used at module level)."""
    with _LOCK:
        if method.name in _REGISTRY and not replace:
            raise ValueError(f"a method named {method.name!r} is already registered")
        _REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method (tests, plugins that replace a built-in)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def _load_optional_modules() -> None:
    global _loaded_optional
    if _loaded_optional:
        return
    _loaded_optional = True
    for module in OPTIONAL_METHOD_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"


def method_names() -> list[str]:
    """The registered method names, in registration order."""
    _load_optional_modules()
    return list(_REGISTRY)


def methods() -> list[Method]:
    _load_optional_modules()
    return list(_REGISTRY.values())


def get_method(name: str) -> Method:
    """The registered method ``name``; KeyError listing the known ones (and any method
    module that failed to import) otherwise."""
    _load_optional_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = "".join(f"; {m} could not be imported ({e})" for m, e in _IMPORT_ERRORS.items())
        raise KeyError(f"unknown method {name!r}; registered: {list(_REGISTRY)}{hint}") from None


def missing_needs(method: Method, dataset) -> list[str]:
    """Why ``method`` cannot run on ``dataset`` (empty when it can). Looks at the first
    training frame only."""
    reasons = []
    frame = dataset.train[0] if len(dataset.train) else None
    checks = {
        "depth": lambda: frame is not None and frame.depth_m is not None,
        "instance_labels": lambda: frame is not None and frame.instance is not None,
        "semantic_labels": lambda: frame is not None and frame.semantic is not None,
        "torch": lambda: importlib.util.find_spec("torch") is not None,
    }
    for need in method.needs:
        if need == "cuda":
            ok = False
            if importlib.util.find_spec("torch") is not None:
                import torch

                ok = bool(torch.cuda.is_available())
            if not ok:
                reasons.append("needs a CUDA device")
        elif not checks[need]():
            reasons.append(f"needs {need.replace('_', ' ')}")
    return reasons


# --------------------------------------------------------------------------- config overrides


def apply_overrides(section: Section, overrides: Mapping[str, Any] | None) -> Section:
    """A validated copy of ``section`` with ``overrides`` (nested mappings for nested
    sections) applied; an unknown field raises :class:`ConfigError` naming it."""
    if not overrides:
        return section
    if not isinstance(overrides, Mapping):
        raise ConfigError(section.name, f"overrides must be a mapping, got {overrides!r}")
    names = {f.name for f in dataclasses.fields(section)}
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"{section.name}.{key}", f"unknown field; known: {sorted(names)}")
        current = getattr(section, key)
        if isinstance(current, Section) and isinstance(value, Mapping):
            value = apply_overrides(current, value)
        changes[key] = value
    return dataclasses.replace(section, **changes)


# --------------------------------------------------------------------------- shared TSDF mesh


def geometry_source(dataset):
    """The object that identifies a scene's training geometry: the training frame
    sequence with any label-simulation wrappers removed (they keep depth and poses).
    Wrappers expose the wrapped sequence as ``.base``."""
    frames = dataset.train
    while hasattr(frames, "base"):
        frames = frames.base
    return frames


class MeshCache:
    """TSDF meshes of training frames, keyed by (geometry source, bounds, TSDF config).

    Holds at most ``max_entries`` meshes (least recently used dropped). The key uses
    the identity of :func:`geometry_source`; the entry keeps a reference to it so the
    identity cannot be reused while cached. Thread-safe for concurrent ``get`` of
    different keys; a key is built once.
    """

    def __init__(self, max_entries: int = 4):
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple, tuple[object, object, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, dataset, tsdf) -> tuple[object, float, bool]:
        """(mesh, seconds it took to build, whether it came from the cache)."""
        from clusteringsdf_core.recon.tsdf import reconstruct_mesh

        source = geometry_source(dataset)
        bounds = None if dataset.bounds is None else tuple(np.ravel(dataset.bounds).tolist())
        key = (id(source), bounds, tsdf)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                _, mesh, seconds = self._entries[key]
                return mesh, seconds, True
            t0 = time.perf_counter()
            mesh = reconstruct_mesh(source, tsdf, bounds=dataset.bounds)
            seconds = time.perf_counter() - t0
            self._entries[key] = (source, mesh, seconds)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return mesh, seconds, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: Used when a caller passes no ``cache`` option (small, so it cannot grow unbounded).
DEFAULT_MESH_CACHE = MeshCache(max_entries=2)


# --------------------------------------------------------------------------- baselines


def _report(options: Mapping[str, Any], fraction: float, message: str) -> None:
    progress = options.get("progress")
    if progress is not None:
        progress(fraction, message)


def _baseline(name: str, description: str, function_name: str, config_name: str,
              needs: Sequence[str]) -> Method:
    def run(dataset, options: dict) -> ScenePrediction:
        from clusteringsdf_core.bench import baselines

        options = options or {}
        config = baselines.for_scene(apply_overrides(getattr(baselines, config_name)(),
                                                     options.get("config")), dataset)
        cache = options.get("cache") or DEFAULT_MESH_CACHE
        _report(options, 0.0, "TSDF mesh")
        mesh, build_s, reused = cache.get(dataset, config.tsdf)
        _report(options, 0.5, name)
        prediction = getattr(baselines, function_name)(dataset, config, mesh=mesh)
        prediction.method = name
        prediction.meta["tsdf_build_s"] = build_s
        prediction.meta["reused_s"] = build_s if reused else 0.0
        prediction.meta["config"] = dataclasses.asdict(config)
        _report(options, 1.0, "done")
        return prediction

    return Method(name, description, run, needs=tuple(needs), meta={"kind": "baseline"})


def _register_builtins() -> None:
    register_method(_baseline(
        "felzenszwalb", "Felzenszwalb-Huttenlocher segmentation of the TSDF mesh (UnScene3D "
        "baseline); classes by machine-label vote", "felzenszwalb_mesh", "FelzenszwalbConfig",
        ("depth",)), replace=True)
    register_method(_baseline(
        "hdbscan", "HDBSCAN on voxel-downsampled TSDF vertices (UnScene3D baseline); classes "
        "by machine-label vote", "hdbscan_points", "HDBSCANConfig", ("depth",)), replace=True)
    register_method(_baseline(
        "naive_fusion", "per-vertex majority vote of the raw view-local machine ids, taken as "
        "if consistent across views (fails by design)", "naive_fusion", "NaiveFusionConfig",
        ("depth", "instance_labels")), replace=True)


_register_builtins()
