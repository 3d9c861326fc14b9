"""The training loss: weighted mean squared errors of energy per atom, forces and stress.

``L = w_E mean_g((E_g - E_g^ref) / N_g)^2 + w_F mean_(i,a)(F_ia - F_ia^ref)^2 + w_S mean_(g,a,b)(S_gab - S_gab^ref)^2``

Each mean is a sum of squares divided by a count. Under DDP the counts are summed over all
processes before dividing, so the averaged gradient is exactly that of the loss of the global
batch, whatever the number of processes and the sizes of their graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..data import keys
from .config import LossConfig


def atoms_per_graph(batch: Any, num_graphs: int) -> torch.Tensor:
    """``[G]`` number of atoms of each graph of a PyG batch."""
    return torch.bincount(batch[keys.BATCH], minlength=num_graphs)


def squared_errors(pred: Mapping[str, torch.Tensor], batch: Any, names: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, int]]:
    """Sums of squared errors and their counts for each of ``names`` (``energy_per_atom``, ``forces``, ``stress``).

    Args:
        pred: model output (``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``).
        batch: PyG batch with the reference ``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``.
        names: which terms to compute.

    Returns:
        ``{name: (sum of squares (0-dim, differentiable), number of terms)}``.
    """
    out = {}
    for name in names:
        if name == "energy_per_atom":
            n_atoms = atoms_per_graph(batch, pred[keys.ENERGY].shape[0]).to(torch.float64)
            # residual of two float64 totals (the model's energy head and the targets are float64)
            diff = (pred[keys.ENERGY].to(torch.float64) - batch[keys.ENERGY].to(torch.float64)) / n_atoms  # [G]
        elif name == keys.FORCES:
            diff = pred[keys.FORCES] - batch[keys.FORCES]  # [N, 3]
        elif name == keys.STRESS:
            diff = pred[keys.STRESS] - batch[keys.STRESS].reshape(-1, 3, 3)  # [G, 3, 3]
        else:
            raise ValueError(f"unknown loss term {name!r}")
        out[name] = (diff.square().sum(), diff.numel())
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
        counts = torch.tensor([float(count) for _, count in terms.values()], dtype=torch.float64)
        if sum_counts is not None:
            counts = sum_counts(counts)
        loss = pred[keys.ENERGY].new_zeros(())
        for (name, (total, _)), count in zip(terms.items(), counts.tolist()):
            loss = loss + self.weights[name] * total / count
        return loss * world_size

    def from_mse(self, mse: Mapping[str, float]) -> float:
        """The loss from mean squared errors ``{name: mse}`` (e.g. over a whole epoch); absent terms count 0."""
        return sum(self.weights[name] * mse[name] for name in self.names if name in mse)
