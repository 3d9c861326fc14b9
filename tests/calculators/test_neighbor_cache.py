"""The skin neighbour list: exactly the edges (and forces) of a fresh rebuild, with few rebuilds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from calc_systems import R_MAX, cu_bulk

from molequi.calculators import MolequiCalculator, SkinNeighborList
from molequi.data import neighbor_list


def _tensors(atoms):
    pos = torch.from_numpy(atoms.positions.copy())
    cell = torch.from_numpy(atoms.cell.array.copy()) if atoms.pbc.any() else torch.zeros(3, 3, dtype=torch.float64)
    return pos, cell, torch.from_numpy(atoms.pbc.copy())


@pytest.mark.parametrize("periodic", [True, False], ids=["bulk", "molecule"])
def test_skin_reuse_identical_to_rebuild_over_md(trained_model, committee_models, periodic):
    """Hot MD, a small skin: edges and forces at every step equal those of a fresh neighbour list."""
    if periodic:
        atoms, model = cu_bulk(seed=5), trained_model
    else:
        atoms, model = molecule("CH3CH2OH"), committee_models[1]
    cached = MolequiCalculator(model, skin=0.3)
    fresh = MolequiCalculator(model, skin=0.0)
    atoms.calc = cached
    thermalize_momenta(atoms, 1500.0, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    skin_list = SkinNeighborList(R_MAX, skin=0.3)
    for _ in range(40):
        dyn.run(1)
        edges = skin_list.update(*_tensors(atoms))
        edge_index, edge_shift = neighbor_list(*_tensors(atoms)[:1], R_MAX, *_tensors(atoms)[1:])
        assert torch.equal(edges.edge_index, edge_index) and torch.equal(edges.edge_shift, edge_shift)
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(atoms), rtol=0, atol=1e-12)
    assert 1 < cached.neighbors.num_builds < 40  # rebuilt, but not at every step
    assert fresh.neighbors.num_builds == 40


def test_cell_change_triggers_rebuild():
    atoms = cu_bulk(seed=6)
    skin_list = SkinNeighborList(R_MAX, skin=1.0)
    skin_list.update(*_tensors(atoms))
    skin_list.update(*_tensors(atoms))
    assert skin_list.num_builds == 1
    atoms.set_cell(atoms.cell * 1.001, scale_atoms=True)
    edges = skin_list.update(*_tensors(atoms))
    assert skin_list.num_builds == 2
    assert torch.equal(edges.edge_index, neighbor_list(*_tensors(atoms)[:1], R_MAX, *_tensors(atoms)[1:])[0])


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        SkinNeighborList(R_MAX, skin=-0.1)
    with pytest.raises(ValueError):
        SkinNeighborList(0.0)
