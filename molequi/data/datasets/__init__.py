"""Datasets: any ASE-readable file, MD17 / revised MD17 and QM9, as cached graph datasets."""

from molequi.data.datasets.ase_dataset import ASEDataset
from molequi.data.datasets.cache import GraphDataset
from molequi.data.datasets.md17 import MD17
from molequi.data.datasets.qm9 import QM9
from molequi.data.datasets.splits import random_split_indices

__all__ = ["ASEDataset", "GraphDataset", "MD17", "QM9", "random_split_indices"]
