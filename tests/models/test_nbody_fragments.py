"""Fragments and molecules of the N-body hierarchy: the rule, its invariance under atom order, frozen labels."""

from __future__ import annotations

import ase.io
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.collections import s22

from molequi.models.nbody import decompose
from molequi.models.nbody.fragments import bonds_of, bridges, build_hierarchy, fragment_graph, molecules_from_bonds


def _tensors(atoms: Atoms) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(atoms.numbers), torch.tensor(atoms.positions, dtype=torch.float64)


def _groups(atoms: Atoms, labels: torch.Tensor) -> list[str]:
    """Sorted formulas of the groups of ``labels`` (e.g. ``["C2H6O"]``)."""
    return sorted(atoms[(labels == label).numpy()].get_chemical_formula() for label in labels.unique())


def _partition(labels: torch.Tensor) -> set[frozenset[int]]:
    return {frozenset(torch.nonzero(labels == label).flatten().tolist()) for label in labels.unique()}


def _all_pairs(atoms: Atoms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z, pos = _tensors(atoms)
    pairs = torch.ones(len(atoms), len(atoms), dtype=torch.bool).fill_diagonal_(False).nonzero().T
    return z, pairs, pos[pairs[0]] - pos[pairs[1]]


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        ("CH3CH2OH", ["C2H6O"]),  # terminal CH3 and OH join the central carbon
        ("CH3COOH", ["C2H4O2"]),
        ("C6H6", ["C6H6"]),  # a ring is one fragment
        ("trans-butane", ["C2H5", "C2H5"]),  # a chain C-C bond between non-terminal atoms is cut
        ("CH3CONH2", ["C2H5NO"]),
        ("H2O", ["H2O"]),
    ],
)
def test_fragments_are_rings_and_functional_groups(name, groups):
    atoms = molecule(name)
    assert _groups(atoms, decompose(*_tensors(atoms))) == groups


def test_aspirin_splits_into_ring_carboxylic_acid_and_acetoxy_group(shared_data):
    aspirin = ase.io.read(shared_data / "rmd17" / "aspirin_train_1200_macejax.xyz", 0)
    assert _groups(aspirin, decompose(*_tensors(aspirin))) == ["C2H3O2", "C6H4", "CHO2"]


def test_octane_keeps_interior_methylenes_alone():
    octane = Atoms("C8H18")
    carbons = [(1.25 * k, 0.45 * (k % 2), 0.0) for k in range(8)]
    hydrogens = []
    for k, (x, y, _) in enumerate(carbons):
        away = -1.0 if k % 2 == 0 else 1.0
        hydrogens += [(x, y + 0.6 * away, 0.9), (x, y + 0.6 * away, -0.9)]
    hydrogens += [(-1.0, 0.0, 0.0), (8.75 + 1.0, 0.45, 0.0)]
    octane.positions = carbons + hydrogens
    assert _groups(octane, decompose(*_tensors(octane))) == ["C2H5", "C2H5", "CH2", "CH2", "CH2", "CH2"]


@pytest.mark.parametrize("name", ["CH3CH2OH", "C6H6", "trans-butane", "CH3CONH2", "CH3CH2OCH3"])
def test_partitions_follow_a_permutation_of_the_atoms(name):
    atoms = molecule(name)
    atoms.rattle(0.05, seed=3)
    z, pos = _tensors(atoms)
    labels = decompose(z, pos)
    for seed in range(3):
        perm = torch.randperm(len(atoms), generator=torch.Generator().manual_seed(seed))
        permuted = decompose(z[perm], pos[perm])
        assert {frozenset(perm[sorted(f)].tolist()) for f in _partition(permuted)} == _partition(labels)
        # each label is the smallest atom index of its fragment
        assert all(int(permuted[i]) == min(f) for f in _partition(permuted) for i in f)


def test_molecules_are_bonded_components_and_hold_their_frozen_hydrogens():
    dimer = s22["Water_dimer"]  # the hydrogen bond O...H (1.9 A) is no covalent bond
    z, edge_index, edge_vec = _all_pairs(dimer)
    bonds = bonds_of(z, edge_index, edge_vec, 1.3)
    fragments = decompose(*_tensors(dimer))
    assert len(_partition(molecules_from_bonds(z, bonds, fragments))) == 2
    methanol = molecule("CH3OH")  # C O H(O) H H H
    frozen = decompose(*_tensors(methanol))
    methanol.positions[2] += 2.0 * (methanol.positions[2] - methanol.positions[1])  # O-H tripled
    z, edge_index, edge_vec = _all_pairs(methanol)
    bonds = bonds_of(z, edge_index, edge_vec, 1.3)
    assert len(_partition(decompose(*_tensors(methanol)))) == 2  # the hydrogen left
    assert len(_partition(molecules_from_bonds(z, bonds, decompose(*_tensors(methanol))))) == 2
    assert len(_partition(molecules_from_bonds(z, bonds, frozen))) == 1  # frozen: it stays in its molecule


def test_bridges_are_the_edges_on_no_cycle():
    # a triangle 0-1-2 joined by the edge 2-3 to a square 3-4-5-6, and a pendant 6-7
    edges = [(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (4, 5), (5, 6), (3, 6), (6, 7)]
    assert bridges(8, edges) == [edge in {(2, 3), (6, 7)} for edge in edges]
    assert bridges(3, []) == []


def test_hierarchy_centres_and_counts():
    labels = torch.tensor([5, 5, 7, 9, 9, 9])
    molecules = torch.tensor([0, 0, 0, 3, 3, 3])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    pos = torch.arange(18, dtype=torch.float64).reshape(6, 3)
    mass = torch.tensor([1.0, 3.0, 2.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    hierarchy = build_hierarchy(labels, molecules, batch, pos, mass)
    assert hierarchy.atom_fragment.tolist() == [0, 0, 1, 2, 2, 2]
    assert hierarchy.fragment_molecule.tolist() == [0, 0, 1] and hierarchy.fragment_batch.tolist() == [0, 0, 1]
    assert hierarchy.atoms_per_fragment.tolist() == [2, 1, 3] and hierarchy.fragments_per_molecule.tolist() == [2, 1]
    torch.testing.assert_close(hierarchy.fragment_pos[0], (pos[0] + 3 * pos[1]) / 4)
    torch.testing.assert_close(hierarchy.molecule_pos[0], (pos[0] + 3 * pos[1] + 2 * pos[2]) / 6)
    with pytest.raises(ValueError, match="different graphs"):
        build_hierarchy(torch.tensor([0, 0, 0, 0, 9, 9]), molecules, batch, pos, mass)


def test_fragment_graph_links_close_centres_of_one_graph_only():
    pos = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    batch = torch.tensor([0, 0, 0, 1])  # fragment 3 sits on fragment 0 but in another graph
    pairs = fragment_graph(pos, batch, cutoff=6.0)
    assert sorted(map(tuple, pairs.T.tolist())) == [(0, 1), (1, 0)]
    assert bool((pairs[1][1:] >= pairs[1][:-1]).all())  # sorted by target
