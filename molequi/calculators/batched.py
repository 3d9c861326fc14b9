"""Batched evaluation of many structures: one neighbour-list call and one model call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ase import Atoms
from torch_geometric.data import Batch

from ..data import structures_to_graphs
from ..data.structure import Structure
from ..models import AtomisticModel
from .checks import check_atoms
from .inference import evaluate, known_elements, structure_results


def predict(
    models: Sequence[AtomisticModel],
    structures: Sequence[Atoms],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """Energies, forces and (for fully periodic cells) stresses of many structures.

    Periodic and non-periodic structures are batched separately (stress needs every graph of a
    batch to be periodic); results come back in input order.

    Args:
        models: prepared models (see :func:`~molequi.calculators.inference.prepare_models`).
        structures: the structures.
        batch_size: structures per model call.
        device: where the models live.

    Returns:
        One dict per structure with the keys of
        :func:`~molequi.calculators.inference.structure_results` (the same as
        ``MolequiCalculator.results`` after a calculation).

    Raises:
        ValueError: an empty structure, an unknown element, NaN/inf positions or cell, two atoms
            closer than 0.1 Å (naming ``structure k``), or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    elements = known_elements(models)
    for k, atoms in enumerate(structures):
        check_atoms(atoms, elements, f"structure {k}")
    periodic = [k for k, atoms in enumerate(structures) if atoms.pbc.all()]
    other = [k for k, atoms in enumerate(structures) if not atoms.pbc.all()]
    results: dict[int, dict[str, Any]] = {}
    for indices, with_stress in ((periodic, True), (other, False)):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            results.update(
                zip(chunk, _predict_batch(models, [structures[k] for k in chunk], chunk, with_stress, device))
            )
    return [results[k] for k in range(len(structures))]


def _predict_batch(
    models: Sequence[AtomisticModel],
    structures: Sequence[Atoms],
    indices: Sequence[int],
    with_stress: bool,
    device: str | torch.device,
) -> list[dict[str, Any]]:
    """Results of one batch of structures (all periodic when ``with_stress``)."""
    dtype = next(models[0].parameters()).dtype
    frames = [
        Structure.create(a.numbers, a.positions, a.cell.array, a.pbc, where=f"structure {k}")
        for a, k in zip(structures, indices)
    ]
    graphs = structures_to_graphs(frames, models[0].r_max, dtype=dtype)  # elements: checked by predict
    batch = Batch.from_data_list(graphs).to(device)
    out = {name: value.cpu().numpy() for name, value in evaluate(models, batch, with_stress).items()}
    ptr = batch.ptr.tolist()
    return [
        structure_results(
            out["energy"][:, g],
            out["forces"][:, ptr[g] : ptr[g + 1]],
            out["stress"][:, g] if with_stress else None,
        )
        for g in range(len(frames))
    ]
