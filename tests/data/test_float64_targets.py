"""Energies (and stresses) are float64 in every graph, whatever the dtype of positions and model."""

from __future__ import annotations

import ase.io
import torch

from molequi.data import ASEDataset, keys


def test_dataset_energies_equal_the_files_in_a_float32_dataset(shared_data, tmp_path):
    path = shared_data / "rmd17" / "aspirin_train_1200_macejax.xyz"
    frames = ase.io.read(path, ":20")
    subset = tmp_path / "aspirin20.extxyz"
    ase.io.write(subset, frames)
    dataset = ASEDataset(subset, r_max=5.0, dtype=torch.float32, cache_dir=tmp_path / "cache")
    for atoms, graph in zip(frames, dataset):
        assert graph[keys.POSITIONS].dtype == torch.float32
        assert graph[keys.ENERGY].dtype == torch.float64
        # -17,617.8 eV: float32 would be 1 meV off; float64 keeps it to 1e-9 eV
        assert abs(float(graph[keys.ENERGY]) - atoms.get_potential_energy()) < 1e-9
