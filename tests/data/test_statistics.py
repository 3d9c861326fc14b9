"""compute_statistics: least-squares references, given references, counts, and checkpoint round trip."""

import io

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from molequi.data import DatasetStatistics, atoms_to_graph, compute_statistics, isolated_atom_energies

E0 = {1: -13.6, 6: -1029.0, 8: -2042.0}


def synthetic(rng, n_graphs=40):
    """Random CHO molecules whose energy is sum of E0 plus 0.01 eV/atom noise, with forces."""
    graphs = []
    for _ in range(n_graphs):
        n = int(rng.integers(3, 9))
        z = rng.choice([1, 6, 8], n)
        atoms = Atoms(numbers=z, positions=rng.uniform(0, 4, (n, 3)))
        while atoms.get_all_distances()[np.triu_indices(n, 1)].min() < 0.5:
            atoms.positions = rng.uniform(0, 4, (n, 3))
        energy = sum(E0[int(k)] for k in z) + 0.01 * n * rng.normal()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=rng.normal(size=(n, 3)))
        graphs.append(atoms_to_graph(atoms, 2.0, dtype=torch.float64))
    return graphs


def test_least_squares_recovers_reference_energies():
    graphs = synthetic(np.random.default_rng(0))
    stats = compute_statistics(graphs)
    assert stats.elements == [1, 6, 8] and stats.atomic_energies_source == "least_squares"
    assert np.allclose(stats.atomic_energies, [E0[1], E0[6], E0[8]], atol=0.05)
    assert abs(stats.per_atom_energy_mean) < 1e-3 and 0 < stats.per_atom_energy_std < 0.05
    forces = torch.cat([g.forces for g in graphs])
    assert stats.force_rms == pytest.approx(float(forces.square().mean().sqrt()))
    n_edges = sum(g.edge_index.shape[1] for g in graphs)
    n_atoms = sum(g.num_nodes for g in graphs)
    assert stats.avg_num_neighbors == pytest.approx(n_edges / n_atoms) and stats.num_atoms == n_atoms
    assert compute_statistics(graphs, r_max=2.0).avg_num_neighbors == pytest.approx(stats.avg_num_neighbors)


def test_given_isolated_atom_energies():
    graphs = synthetic(np.random.default_rng(1), 10)
    singles = [atoms_to_graph(Atoms(s), 1.0) for s in ("H", "C", "O")]
    for g, z in zip(singles, (1, 6, 8)):
        g.energy = torch.tensor([E0[z] + 1.0])
    given = isolated_atom_energies(singles)
    stats = compute_statistics(graphs, atomic_energies=given)
    assert stats.atomic_energies_source == "given"
    assert stats.atomic_energies == pytest.approx([E0[1] + 1, E0[6] + 1, E0[8] + 1])
    assert stats.per_atom_energy_mean == pytest.approx(-1.0, abs=0.02)
    by_symbol = compute_statistics(graphs, atomic_energies={"H": 0.0, "C": 0.0, "O": 0.0})
    assert by_symbol.atomic_energies == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no entry for atomic number"):
        compute_statistics(graphs, atomic_energies={1: 0.0})


def test_single_composition_warns():
    rng = np.random.default_rng(2)
    atoms = Atoms("CH4", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]])
    graphs = []
    for _ in range(5):
        atoms.calc = SinglePointCalculator(atoms, energy=-1100.0 + rng.normal())
        graphs.append(atoms_to_graph(atoms, 2.0, dtype=torch.float64))
    with pytest.warns(UserWarning, match="span only 1 of 2 elements"):
        stats = compute_statistics(graphs)
    assert stats.force_rms is None
    residual = np.array([g.energy.item() for g in graphs]) - (4 * stats.atomic_energies[0] + stats.atomic_energies[1])
    assert abs(residual.mean()) < 1e-8  # the fit still removes the mean energy
    # and every element gets the mean energy per atom, not a minimum-norm split (was C -1035, H -16.4)
    mean_per_atom = np.mean([g.energy.item() / 5 for g in graphs])
    assert stats.atomic_energies == pytest.approx([mean_per_atom, mean_per_atom], abs=1e-9)


def test_round_trip_through_a_weights_only_checkpoint():
    stats = compute_statistics(synthetic(np.random.default_rng(3), 8))
    buffer = io.BytesIO()
    torch.save({"statistics": stats.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["statistics"]
    assert DatasetStatistics.from_dict(loaded) == stats
    assert stats.atomic_energy_map()[6] == stats.atomic_energies[1]
    with pytest.raises(ValueError, match="unknown DatasetStatistics fields"):
        DatasetStatistics.from_dict({**loaded, "typo": 1})


def test_rmd17_aspirin_with_isolated_atoms(shared_data, tmp_path):
    from molequi.data import ASEDataset

    data = ASEDataset(
        shared_data / "rmd17/aspirin_train_1200_macejax.xyz", index=":100", cache_dir=tmp_path, dtype=torch.float64
    )
    iso = ASEDataset(shared_data / "rmd17/ethanol_botnet/isolated_atoms.xyz", cache_dir=tmp_path, dtype=torch.float64)
    stats = compute_statistics(data, atomic_energies=isolated_atom_energies(iso))
    assert stats.elements == [1, 6, 8]
    # Atomization energy of aspirin at PBE/def2-SVP: about -6.6 eV per atom.
    assert -7.0 < stats.per_atom_energy_mean < -6.3
    assert 0.5 < stats.force_rms < 2.0


def test_placeholders_of_fill_missing_are_ignored():
    from molequi.data.datasets.builder import fill_missing_targets

    graphs = synthetic(np.random.default_rng(4), 30)
    reference = compute_statistics(graphs[10:])
    for g in graphs[:10]:  # the first ten lose energy and forces
        del g.energy, g.forces
    fill_missing_targets(graphs)
    assert not graphs[0].has_energy.item() and graphs[10].has_forces.item()
    stats = compute_statistics(graphs)
    assert stats.atomic_energies == pytest.approx(reference.atomic_energies)
    assert stats.force_rms == pytest.approx(reference.force_rms)
    assert stats.num_graphs == 30


def test_demo_dataset_references(tmp_path):
    from pathlib import Path

    from molequi.data import ASEDataset

    demo = Path(__file__).resolve().parents[2] / "datasets" / "demo"
    data = ASEDataset(demo / "emt_cu.extxyz", fill_missing=True, cache_dir=tmp_path, dtype=torch.float64)
    fitted = compute_statistics(data)  # Cu and Au in varying amounts: E0 is determined
    assert fitted.elements == [29, 79] and fitted.per_atom_energy_std < 0.5  # clusters vs bulk
    iso = isolated_atom_energies(ASEDataset(demo / "emt_isolated_atoms.extxyz", cache_dir=tmp_path))
    given = compute_statistics(data, atomic_energies=iso)
    assert given.per_atom_energy_mean < -2.0  # bound atoms: EMT cohesive energies of a few eV per atom
