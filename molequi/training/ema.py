"""Exponential moving average of a model's weights, for evaluation and the saved model."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..dtypes import default_dtype


class ExponentialMovingAverage:
    """A copy of ``model`` whose parameters follow ``p_ema <- d p_ema + (1 - d) p``.

    The decay is warmed up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    early weights (far from the optimum) are forgotten quickly. Buffers are copied as they are.
    With ``decay = 0`` the copy simply equals the model after each update.

    Args:
        model: the model being trained (not modified).
        decay: the long-run decay ``d`` in ``[0, 1)``.

    Attributes:
        module: the averaged model, in eval mode, without gradients.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.num_updates = 0
        self.module = _copy_of(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the current weights of ``model`` (same architecture)."""
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for average, current in zip(self.module.parameters(), model.parameters(), strict=True):
            average.lerp_(current.detach(), 1.0 - decay)
        current_buffers = dict(model.named_buffers())
        for name, average in self.module.named_buffers():
            average.copy_(current_buffers[name])

    def state_dict(self) -> dict[str, Any]:
        """Decay, update count and the averaged weights."""
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])


def _copy_of(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of ``model`` with the same weights, buffers, dtype and device.

    Models that keep their constructor arguments in ``config`` (every
    :class:`~molequi.models.AtomisticModel`) are rebuilt from them: ``copy.deepcopy`` of e3nn's
    fx-compiled tensor products adds ``_tensor_constant`` buffers, which would change the state
    dict saved in model.pt. Other modules are deep-copied.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        return copy.deepcopy(model)
    reference = next(model.parameters())
    with default_dtype(reference.dtype):
        fresh = type(model)(**config)
    fresh.load_state_dict(model.state_dict())
    return fresh.to(reference.device)
