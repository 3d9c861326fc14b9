"""Neighbour lists (radius graphs) with interchangeable, exactly agreeing backends."""

from molequi.data.neighborlist.api import available_backends, edge_vectors, neighbor_list

__all__ = ["available_backends", "edge_vectors", "neighbor_list"]
