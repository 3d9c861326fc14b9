"""Molecular data as PyG graphs: neighbour lists, readers, datasets and statistics.

Graph attribute names and shapes are defined in :mod:`molequi.data.keys`; batches are
made with :class:`torch_geometric.loader.DataLoader`.
"""

from molequi.data import keys, units
from molequi.data.datasets import MD17, QM9, ASEDataset, GraphDataset, random_split_indices
from molequi.data.graph import atoms_to_graph, structures_to_graphs
from molequi.data.neighborlist import available_backends, neighbor_list
from molequi.data.statistics import DatasetStatistics, compute_statistics, isolated_atom_energies
from molequi.data.structure import Structure, structure_from_atoms

__all__ = [
    "ASEDataset",
    "DatasetStatistics",
    "GraphDataset",
    "MD17",
    "QM9",
    "Structure",
    "atoms_to_graph",
    "available_backends",
    "compute_statistics",
    "isolated_atom_energies",
    "keys",
    "neighbor_list",
    "random_split_indices",
    "structure_from_atoms",
    "structures_to_graphs",
    "units",
]
