"""Neighbour lists (radius graphs) with interchangeable, exactly agreeing backends."""

from molequi.data.neighborlist.api import available_backends, neighbor_list

__all__ = ["available_backends", "neighbor_list"]
