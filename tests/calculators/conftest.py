"""Fixtures: a small float64 model fitted to EMT copper, and untrained models for committees.

The training API is not used here: ``fitted_cu_model`` runs a plain Adam loop on a few EMT
frames (rattled and strained fcc bulk, rattled 13-atom clusters), enough for physical dynamics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from calc_systems import R_MAX, emt_frames, small_model
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph
from molequi.models import EquivariantPotential

@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """One torch thread: these models are tiny, and on a shared 2-core machine several threads
    per process spin against each other (10x slower under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="package")
def fitted_cu_model(one_thread: None) -> EquivariantPotential:
    """A small copper model fitted for 40 Adam steps to EMT energies and forces (float64)."""
    frames = emt_frames()
    per_atom = np.mean([a.get_potential_energy() / len(a) for a in frames])
    force_rms = np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in frames]) ** 2))
    model = small_model([29], seed=0, shift=float(per_atom), scale=float(force_rms))
    graphs = [atoms_to_graph(a, R_MAX, dtype=torch.float64) for a in frames]
    for graph in graphs:
        graph.pop("stress", None)  # EMT gives it for the bulk frames only; energies and forces are fitted
    batch = Batch.from_data_list(graphs)
    counts = torch.bincount(batch.batch).to(torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        out = model(batch, compute_forces=True)
        loss = ((out["energy"] - batch.energy) / counts).square().mean() + (out["forces"] - batch.forces).square().mean()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="package")
def committee_models() -> list[EquivariantPotential]:
    """Three untrained small models for H, C, O and Cu that differ only in their initial weights."""
    return [small_model([1, 6, 8, 29], seed=seed, shift=-1.0) for seed in range(3)]
