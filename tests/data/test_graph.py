"""atoms_to_graph: keys, shapes, dtypes, batching and the errors on bad input."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph, keys
from molequi.nn.edge_embedding import edge_vectors


def water_with_results() -> Atoms:
    atoms = molecule("H2O")
    atoms.calc = SinglePointCalculator(atoms, energy=-14.2, forces=np.arange(9.0).reshape(3, 3))
    return atoms


def emt_bulk() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.get_stress()
    return atoms


def test_molecule_graph_layout():
    data = atoms_to_graph(water_with_results(), r_max=2.0)
    assert data[keys.ATOMIC_NUMBERS].tolist() == [8, 1, 1] and data.z.dtype == torch.long
    assert data.pos.dtype == torch.get_default_dtype() and data.pos.shape == (3, 3)
    assert data.edge_index.shape == (2, 6) and data.edge_shift.shape == (6, 3)
    assert data.cell.shape == (1, 3, 3) and (data.cell == 0).all()
    assert data.pbc.shape == (1, 3) and data.pbc.dtype == torch.bool and not data.pbc.any()
    assert data.energy.shape == (1,) and data.energy.item() == pytest.approx(-14.2)
    assert torch.equal(data.forces, torch.arange(9.0).reshape(3, 3))
    assert "stress" not in data


def test_periodic_graph_has_stress_and_correct_edges():
    atoms = emt_bulk()
    data = atoms_to_graph(atoms, r_max=3.0, dtype=torch.float64)
    assert data.stress.shape == (1, 3, 3)
    assert torch.allclose(data.stress[0], torch.tensor(atoms.get_stress(voigt=False)))
    vec = edge_vectors(data.pos, data.edge_index, data.edge_shift, data.cell)
    from ase.neighborlist import neighbor_list as ase_nl

    d_ase = np.sort(ase_nl("d", atoms, 3.0))
    assert np.allclose(np.sort(vec.norm(dim=1).numpy()), d_ase)


def test_explicit_keys_read_info_and_arrays():
    atoms = molecule("CH4")
    atoms.info["REF_energy"] = -24.0
    atoms.arrays["REF_forces"] = np.ones((5, 3))
    data = atoms_to_graph(atoms, 3.0, energy_key="REF_energy", forces_key="REF_forces")
    assert data.energy.item() == -24.0 and torch.equal(data.forces, torch.ones(5, 3))


def test_batch_keeps_per_graph_tensors_per_graph():
    graphs = [atoms_to_graph(water_with_results(), 2.0), atoms_to_graph(emt_bulk(), 3.0)]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 2
    assert batch.energy.shape == (2,) and batch.cell.shape == (2, 3, 3) and batch.pbc.shape == (2, 3)
    assert batch.edge_index.max() < batch.num_nodes
    n_water = 3
    assert (batch.edge_index[:, graphs[0].edge_index.shape[1] :] >= n_water).all()  # offsets applied
    vec = edge_vectors(batch.pos, batch.edge_index, batch.edge_shift, batch.cell, batch.batch)
    assert (vec.norm(dim=1) < 3.0).all()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Atoms("H2", positions=[[0, 0, 0], [0.05, 0, 0]]), "atoms 0 and 1 are 0.0500 A apart"),
        (lambda: Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "positions contains NaN or inf"),
        (lambda: Atoms("H2", positions=[[0, 0, 0], [np.inf, 0, 0]]), "positions contains NaN or inf"),
        (lambda: Atoms([0, 1], positions=[[0, 0, 0], [1, 0, 0]]), "unknown element"),
        (lambda: Atoms("H", cell=[0.05, 2, 2], pbc=True), "atom 0 and its periodic image"),
        (lambda: Atoms("H", cell=[0, 2, 2], pbc=True), "zero or linearly dependent"),
    ],
)
def test_bad_structures_raise(make, message):
    with pytest.raises(ValueError, match=message):
        atoms_to_graph(make(), 2.0)


def test_missing_requested_key_raises_with_available_keys():
    with pytest.raises(ValueError, match="no energy under key 'REF_energy'.*available keys: energy, forces"):
        atoms_to_graph(water_with_results(), 2.0, energy_key="REF_energy")
