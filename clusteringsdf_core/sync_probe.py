"""Where a training step makes the host wait for the device, found on any machine.

On a GPU every call that needs a device value on the host (``.item()``, ``float()``,
``bool()`` of a tensor, ``.cpu()``, ``.tolist()``) or whose output shape depends on
device data (boolean-mask indexing, ``torch.unique``, ``nonzero``, ``bincount``)
stalls the CPU until the queued kernels have run, so the step cannot overlap its
launches with the work already queued. A random op whose generator lives on another
device than its output, or a factory call that leaves ``device`` to the default,
fails on CUDA or copies host -> device every step.

:class:`HostSyncProbe` is a :class:`torch.overrides.TorchFunctionMode` that records
those calls while code runs under it, on the CPU as well (the calls are the same
whatever the device), so a CPU test can keep the CUDA path clean::

    with HostSyncProbe(trainer.device) as probe:
        trainer.step()
    print(probe.report())

It sees the calls that reach torch through ``__torch_function__`` (torch functions,
``Tensor`` methods and operators), from Python code; work inside a C++ kernel, or
inside a Python function torch implements itself, is not split further.
"""

from __future__ import annotations

import sys
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["HostSyncProbe"]

# Calls that always bring a device value to the host.
_TO_HOST = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
            "__repr__", "__format__", "equal", "allclose", "is_nonzero"}
# Calls whose output shape depends on the values: the host waits to allocate it.
_DATA_DEPENDENT = {"unique", "unique_consecutive", "nonzero", "argwhere", "masked_select", "bincount"}
# Random draws and the factory functions that take ``device``.
_RANDOM_FACTORIES = {"rand", "randn", "randint", "randperm", "normal"}
_FACTORIES = _RANDOM_FACTORIES | {"zeros", "ones", "full", "empty", "arange", "linspace", "eye", "tensor",
                                  "as_tensor", "from_numpy"}


def _name(func) -> str:
    return getattr(func, "__name__", None) or str(func)


def _is_bool_index(index) -> bool:
    if isinstance(index, tuple):
        return any(_is_bool_index(i) for i in index)
    return torch.is_tensor(index) and index.dtype == torch.bool


def _same_device(a: torch.device, b: torch.device) -> bool:
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class HostSyncProbe(TorchFunctionMode):
    """Records host-synchronising calls and off-device random / factory calls
    (module docstring). ``device``: where the code under test is meant to run."""

    def __init__(self, device: str | torch.device = "cpu", *, sites: str | None = "clusteringsdf_core"):
        super().__init__()
        self.device = torch.device(device)
        self._site_prefix = sites
        self.syncs: Counter[str] = Counter()
        #: (call, "file:line") of the innermost caller whose module starts with ``sites``
        self.sites: Counter[tuple[str, str]] = Counter()
        #: random ops given a generator of another device than ``device``
        self.off_device_generators: Counter[str] = Counter()
        #: factory calls that did not say ``device`` (host tensors on a GPU machine)
        self.implicit_device: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        sync = self._sync_kind(name, args, kwargs)
        if sync is not None:
            self.syncs[sync] += 1
            self._record_site(sync)
        generator = kwargs.get("generator")
        if generator is None:
            generator = next((a for a in args if isinstance(a, torch.Generator)), None)
        if generator is not None and not _same_device(generator.device, self.device):
            self.off_device_generators[name] += 1
        if name in _FACTORIES and "device" not in kwargs and not _has_tensor(args, kwargs):
            self.implicit_device[name] += 1       # a host tensor: torch.as_tensor(t) of a tensor keeps t's
            self._record_site(f"{name} without device=")
        return func(*args, **kwargs)

    @staticmethod
    def _sync_kind(name: str, args, kwargs) -> str | None:
        if name in _TO_HOST or name in _DATA_DEPENDENT:
            return name
        if name == "where" and len(args) + len(kwargs) == 1:
            return "where(condition)"
        if name == "repeat_interleave" and "output_size" not in kwargs and len(args) > 1 and torch.is_tensor(args[1]):
            return name
        if name in ("__getitem__", "__setitem__") and len(args) > 1 and _is_bool_index(args[1]):
            return f"{name}[bool]"
        if name in ("index_put", "index_put_") and len(args) > 1 and _is_bool_index(tuple(args[1])):
            return f"{name}[bool]"
        if name == "to" and args and torch.is_tensor(args[0]):
            target = next((a for a in args[1:] if isinstance(a, (str, torch.device))), kwargs.get("device"))
            if target is not None and torch.device(target).type == "cpu":
                return "to(cpu)"
        return None

    def _record_site(self, what: str) -> None:
        if self._site_prefix is None:
            return
        frame = sys._getframe(2)
        while frame is not None and not frame.f_globals.get("__name__", "").startswith(self._site_prefix):
            frame = frame.f_back
        if frame is not None and frame.f_globals.get("__name__") != __name__:
            self.sites[(what, f"{frame.f_globals['__name__']}:{frame.f_lineno}")] += 1

    @property
    def total_syncs(self) -> int:
        return sum(self.syncs.values())

    def report(self) -> str:
        lines = [f"host synchronisations: {self.total_syncs}"]
        lines += [f"  {n:>3}  {name}" for name, n in self.syncs.most_common()]
        if self.off_device_generators:
            lines.append(f"generators off {self.device}: {dict(self.off_device_generators)}")
        if self.implicit_device:
            lines.append(f"factory calls without device=: {dict(self.implicit_device)}")
        if self.sites:
            lines.append("where:")
            lines += [f"  {n:>3}  {what}  {site}" for (what, site), n in sorted(self.sites.items(), key=lambda kv: kv[0][1])]
        return "\n".join(lines)


def _has_tensor(args, kwargs) -> bool:
    """Whether a factory call takes its device from a tensor argument (``torch.as_tensor(t)``,
    ``torch.normal(mean_tensor, 1.0)``)."""
    return any(torch.is_tensor(a) for a in (*args, *kwargs.values()))
