"""Molecular data as PyG graphs: neighbour lists, readers, datasets and statistics.

Graph attribute names and shapes are defined in :mod:`molequi.data.keys`.
"""

from molequi.data import keys, units
from molequi.data.graph import atoms_to_graph, structures_to_graphs
from molequi.data.neighborlist import available_backends, edge_vectors, neighbor_list
from molequi.data.structure import Structure, structure_from_atoms

__all__ = [
    "Structure",
    "atoms_to_graph",
    "available_backends",
    "edge_vectors",
    "keys",
    "neighbor_list",
    "structure_from_atoms",
    "structures_to_graphs",
    "units",
]
