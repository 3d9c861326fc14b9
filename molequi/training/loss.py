"""The training loss: weighted mean squared errors of energy per atom, forces and stress.

``L = w_E mean_g((E_g - E_g^ref) / N_g)^2 + w_F mean_(i,a)(F_ia - F_ia^ref)^2 + w_S mean_(g,a,b)(S_gab - S_gab^ref)^2``

Each mean is a sum of squares divided by a count; targets flagged as placeholders
(``has_<target>`` False, see :mod:`molequi.data.keys`) count in neither. Under DDP the counts
are summed over all processes before dividing, so the averaged gradient is exactly that of the
loss of the global batch, whatever the number of processes and the sizes of their graphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..data import keys
from .config import LossConfig


def atoms_per_graph(batch: Any, num_graphs: int) -> torch.Tensor:
    """``[G]`` number of atoms of each graph of a PyG batch."""
    return torch.bincount(batch[keys.BATCH], minlength=num_graphs)


def available(batch: Any, target: str, num_graphs: int) -> torch.Tensor | None:
    """``[G]`` bool: graphs whose ``target`` is real, from the ``has_<target>`` flags; None without flags.

    Datasets read with ``fill_missing=True`` hold zero placeholders where a frame lacks a target
    (see :mod:`molequi.data.keys`); losses and metrics leave those out.
    """
    flag = keys.availability_key(target)
    return batch[flag].reshape(num_graphs) if flag in batch else None


def squared_errors(
    pred: Mapping[str, torch.Tensor], batch: Any, names: tuple[str, ...]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sums of squared errors and their counts for each of ``names`` (``energy_per_atom``, ``forces``, ``stress``).

    Placeholder targets (``has_<target>`` False) are left out of both: per graph for the energy and
    stress, per atom of those graphs for the forces. Nothing is read back from the device.

    Args:
        pred: model output (``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``).
        batch: PyG batch with the reference ``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``
            and, where some are placeholders, the ``has_<target> [G]`` flags.
        names: which terms to compute.

    Returns:
        ``{name: (sum of squares (0-dim, differentiable), number of terms (0-dim float64))}``.
    """
    num_graphs = pred[keys.ENERGY].shape[0]
    out = {}
    for name in names:
        if name == "energy_per_atom":
            n_atoms = atoms_per_graph(batch, num_graphs).to(torch.float64)
            # residual of two float64 totals (the model's energy head and the targets are float64)
            diff = (pred[keys.ENERGY].to(torch.float64) - batch[keys.ENERGY].to(torch.float64)) / n_atoms  # [G]
            real = available(batch, keys.ENERGY, num_graphs)  # [G]
        elif name == keys.FORCES:
            diff = pred[keys.FORCES] - batch[keys.FORCES]  # [N, 3]
            real = available(batch, keys.FORCES, num_graphs)
            real = None if real is None else real[batch[keys.BATCH]]  # [N]
        elif name == keys.STRESS:
            diff = pred[keys.STRESS] - batch[keys.STRESS].reshape(-1, 3, 3)  # [G, 3, 3]
            real = available(batch, keys.STRESS, num_graphs)  # [G]
        else:
            raise ValueError(f"unknown loss term {name!r}")
        if real is None:
            count = torch.tensor(float(diff.numel()), dtype=torch.float64, device=diff.device)
        else:
            real = real.reshape(-1, *[1] * (diff.ndim - 1))
            diff = torch.where(real, diff, torch.zeros((), dtype=diff.dtype, device=diff.device))
            count = real.sum(dtype=torch.float64) * math.prod(diff.shape[1:])
        out[name] = (diff.square().sum(), count)
    return out


class WeightedLoss:
    """The weighted sum of mean squared errors (see the module docstring).

    Args:
        config: the weights; terms of weight 0 are not computed.
    """

    def __init__(self, config: LossConfig) -> None:
        self.weights = {
            "energy_per_atom": config.energy_weight,
            keys.FORCES: config.forces_weight,
            keys.STRESS: config.stress_weight,
        }
        self.names = tuple(name for name, weight in self.weights.items() if weight > 0)

    @property
    def needs_forces(self) -> bool:
        return keys.FORCES in self.names

    @property
    def needs_stress(self) -> bool:
        return keys.STRESS in self.names

    def __call__(
        self,
        pred: Mapping[str, torch.Tensor],
        batch: Any,
        sum_counts: Callable[[torch.Tensor], torch.Tensor] | None = None,
        world_size: int = 1,
    ) -> torch.Tensor:
        """The loss of one batch (0-dim).

        Args:
            pred, batch: see :func:`squared_errors`.
            sum_counts: sums a ``[T]`` tensor of counts over processes (DDP); None: this process only.
            world_size: number of processes whose gradients DDP averages.
        """
        terms = squared_errors(pred, batch, self.names)
        counts = torch.stack([count for _, count in terms.values()])
        if sum_counts is not None:
            counts = sum_counts(counts)
        loss = pred[keys.ENERGY].new_zeros(())
        for (name, (total, _)), count in zip(terms.items(), counts):
            # no real target of this kind anywhere: the sum is 0 too, and so is the term
            loss = loss + self.weights[name] * total / count.clamp(min=1).to(total.dtype)
        return loss * world_size

    def from_mse(self, mse: Mapping[str, float]) -> float:
        """The loss from mean squared errors ``{name: mse}`` (e.g. over a whole epoch); absent terms count 0."""
        return sum(self.weights[name] * mse[name] for name in self.names if name in mse)
