"""The training loss: weighted mean squared errors of energy per atom, forces, stress and molecular properties.

``L = w_E mean_g((E_g - E_g^ref) / N_g)^2 + w_F mean_(i,a)(F_ia - F_ia^ref)^2 + w_S mean_(g,a,b)(S_gab - S_gab^ref)^2
+ w_mu mean_g(|mu_g| - |mu_g|^ref)^2 + w_I mean_g(I_g - I_g^ref)^2``

The last two terms train molecular properties (QM9): the norm of the model's ``dipole [G, 3]``
(e Å, converted to Debye, the unit of the per-graph target :data:`DIPOLE_NORM`) and a per-molecule
invariant ``intensive [G]`` (a mean-pooled output, e.g. the HOMO-LUMO gap in eV) against the
per-graph target :data:`INTENSIVE`.

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
from ase import units

from ..data import keys
from ..nn.edge_embedding import safe_norm
from .config import LossConfig

#: Per-graph target ``[1]``: the norm of the molecular dipole, Debye (QM9's ``mu``).
DIPOLE_NORM = keys.DIPOLE_NORM
#: Per-graph target ``[1]`` and model output ``[G]``: a size-intensive molecular invariant (e.g. a gap, eV).
INTENSIVE = keys.INTENSIVE
#: Debye per e Å (the unit of the models' ``dipole`` output).
DEBYE_PER_E_ANGSTROM = 1.0 / units.Debye
#: Loss terms: ``{term: (weight key in the loss config, target key in the batch, model output that predicts it)}``.
TERMS = {
    "energy_per_atom": ("energy_weight", keys.ENERGY, keys.ENERGY),
    keys.FORCES: ("forces_weight", keys.FORCES, keys.FORCES),
    keys.STRESS: ("stress_weight", keys.STRESS, keys.STRESS),
    DIPOLE_NORM: ("dipole_weight", DIPOLE_NORM, "dipole"),
    INTENSIVE: ("intensive_weight", INTENSIVE, INTENSIVE),
}


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


def dipole_norm(pred: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[G]`` norm of the predicted ``dipole [G, 3]`` (e Å) in Debye, float64 (a finite gradient at 0)."""
    return safe_norm(pred["dipole"].to(torch.float64)) * DEBYE_PER_E_ANGSTROM


def check_term(pred: Mapping[str, torch.Tensor], batch: Any, name: str) -> None:
    """Raise a clear error where loss term ``name`` lacks its target in ``batch`` or its output in ``pred``.

    Raises:
        ValueError: naming the weight, the missing key and what to set.
    """
    weight, target, output = TERMS[name]
    if target not in batch:
        hint = {keys.ENERGY: " (QM9 targets mu and gap have none: set loss.energy_weight: 0)",
                DIPOLE_NORM: " (set data.target: mu for QM9)", INTENSIVE: " (set data.target: gap, homo or lumo for QM9)"}  # fmt: skip
        raise ValueError(f"loss.{weight} > 0 but the data has no {target} target{hint.get(target, '')}")
    if output not in pred:
        hint = {"dipole": " (set model.dipole: true)", INTENSIVE: " (set model.intensive: true)"}
        raise ValueError(f"loss.{weight} > 0 but the model has no {output} output{hint.get(output, '')}")


def squared_errors(
    pred: Mapping[str, torch.Tensor], batch: Any, names: tuple[str, ...]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sums of squared errors and their counts for each of ``names`` (keys of :data:`TERMS`).

    Placeholder targets (``has_<target>`` False) are left out of both: per graph for the energy and
    stress, per atom of those graphs for the forces. Nothing is read back from the device.

    Args:
        pred: model output (``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``, ``dipole [G, 3]``,
            ``intensive [G]``).
        batch: PyG batch with the reference ``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``,
            ``dipole_norm [G]`` (Debye), ``intensive [G]`` and, where some are placeholders, the
            ``has_<target> [G]`` flags.
        names: which terms to compute.

    Returns:
        ``{name: (sum of squares (0-dim, differentiable), number of terms (0-dim float64))}``.

    Raises:
        ValueError: a term whose target or model output is missing (:func:`check_term`).
    """
    num_graphs = pred[keys.ENERGY].shape[0]
    out = {}
    for name in names:
        if name not in TERMS:
            raise ValueError(f"unknown loss term {name!r}")
        check_term(pred, batch, name)
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
        elif name == DIPOLE_NORM:
            diff = dipole_norm(pred) - batch[DIPOLE_NORM].to(torch.float64).reshape(num_graphs)  # [G], Debye
            real = available(batch, DIPOLE_NORM, num_graphs)
        else:  # INTENSIVE
            diff = pred[INTENSIVE].to(torch.float64) - batch[INTENSIVE].to(torch.float64).reshape(num_graphs)  # [G]
            real = available(batch, INTENSIVE, num_graphs)
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
        self.weights = {name: getattr(config, weight) for name, (weight, _, _) in TERMS.items()}
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
