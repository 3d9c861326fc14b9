"""Run a model over a dataset: error metrics and, optionally, the predictions for parity plots."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from ..data import keys
from ..models.atomistic import AtomisticModel
from .loss import atoms_per_graph
from .metrics import MetricAccumulator


@dataclass
class Predictions:
    """Reference and predicted values, for parity plots.

    Attributes:
        energy_per_atom: ``(reference [G], predicted [G])`` in eV/atom (empty without energies, e.g. QM9 ``mu``).
        forces: ``(reference [3N], predicted [3N])`` Cartesian components in eV/A (empty without forces).
    """

    energy_per_atom: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    forces: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))


def evaluate(
    model: AtomisticModel,
    dataset: Dataset,
    device: torch.device | str = "cpu",
    batch_size: int = 20,
    collect: bool = False,
) -> tuple[MetricAccumulator, Predictions | None]:
    """Errors of ``model`` on every graph of ``dataset`` (energy, forces, stress, dipole norm, intensive
    target: each where the data has it and the model predicts it; see :mod:`molequi.training.metrics`).

    The model is put in eval mode (derivatives without a double-backward graph).

    Args:
        model: an energy model on ``device``.
        dataset: graphs with reference ``energy`` and optionally ``forces`` / ``stress``, or
            molecular targets (``dipole_norm``, ``intensive``) only.
        device: where the batches go.
        batch_size: graphs per batch.
        collect: also return the predictions.

    Returns:
        the (unreduced) metric sums, and the predictions when ``collect``.
    """
    model.eval()
    metrics = MetricAccumulator()
    collected: dict[str, list[np.ndarray]] = {"e_ref": [], "e_pred": [], "f_ref": [], "f_pred": []}
    if len(dataset) == 0:
        return metrics, (Predictions() if collect else None)
    sample = dataset[0]
    # stress placeholders (has_stress) mark frames without stress, typically non-periodic: no batch stress then
    compute_forces = keys.FORCES in sample
    compute_stress = keys.STRESS in sample and keys.availability_key(keys.STRESS) not in sample
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = batch.to(device)
        with torch.enable_grad():
            pred = model(batch, compute_forces=compute_forces, compute_stress=compute_stress)
        pred = {k: v.detach() for k, v in pred.items()}
        metrics.update(pred, batch)
        if collect and keys.ENERGY in batch:
            n_atoms = atoms_per_graph(batch, batch.num_graphs).to(pred[keys.ENERGY].dtype)
            collected["e_ref"].append((batch[keys.ENERGY] / n_atoms).cpu().numpy())
            collected["e_pred"].append((pred[keys.ENERGY] / n_atoms).cpu().numpy())
            if compute_forces:
                collected["f_ref"].append(batch[keys.FORCES].reshape(-1).cpu().numpy())
                collected["f_pred"].append(pred[keys.FORCES].reshape(-1).cpu().numpy())
    if not collect:
        return metrics, None
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in collected.items()}
    return metrics, Predictions((joined["e_ref"], joined["e_pred"]), (joined["f_ref"], joined["f_pred"]))
