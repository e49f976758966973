"""The torch threads of the engine's trainer and extractor on a CPU.

torch's intra-op thread count is set per thread. While an extraction runs, the extractor
and the trainer split the trainer's threads (``trainer.num_threads``, or torch's
default): the extractor takes half (at least one), the trainer steps with the rest (at
least one), so the two ask for no more threads than the trainer had alone (two with one
each when it had one). On 2 cores with extractions back to back (trainer alone: 5.2
it/s, an extraction at live resolution alone: 0.68 s): 2.6 it/s and 0.86 s per
extraction when split, 2.05 it/s and 1.06 s when both use 2 threads (OpenMP threads of
one wait for the core the other holds). On a GPU only the extractor's host-side work is
affected."""

from __future__ import annotations

import torch

__all__ = ["ThreadShare"]


class ThreadShare:
    """Sets the calling thread's torch thread count: :meth:`trainer` before each step,
    :meth:`extractor` before each extraction. ``default`` is torch's count on the thread
    that builds it (used when the config leaves ``trainer.num_threads`` at 0)."""

    def __init__(self) -> None:
        self.default = torch.get_num_threads()

    def own(self, trainer) -> int:
        """The trainer's own thread count."""
        configured = trainer.config.trainer.num_threads if trainer is not None else 0
        return int(configured) or self.default

    def lent(self, trainer) -> int:
        """The threads an extraction gets: half the trainer's own, at least one."""
        return max(1, self.own(trainer) // 2)

    def trainer(self, trainer, *, extracting: bool) -> None:
        own = self.own(trainer)
        _set(max(1, own - self.lent(trainer)) if extracting else own)

    def extractor(self, trainer) -> None:
        _set(self.lent(trainer))


def _set(threads: int) -> None:
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
