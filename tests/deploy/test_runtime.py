"""The package loader's host-side parts: inputs, stand-in cells, refusals (no package compiled here)."""

from __future__ import annotations

import pytest
import torch
from deploy_systems import inputs

from molequi.deploy.runtime import cell_with_volume, is_package, load_package, package_inputs


def test_a_cell_with_volume_is_kept():
    cell = torch.tensor([[[3.0, 0, 0], [0.5, 3.0, 0], [0, 0, 4.0]]])
    assert cell_with_volume(cell, compute_stress=True) is cell


def test_missing_lattice_vectors_are_completed_in_place_orthogonally():
    slab = torch.tensor([[[3.0, 0, 0], [0, 0, 0], [1.0, 2.0, 0]]], dtype=torch.float64)
    completed = cell_with_volume(slab, compute_stress=False)[0]
    assert torch.equal(completed[[0, 2]], slab[0, [0, 2]])  # the lattice vectors present keep their rows
    assert torch.allclose(completed[1].abs(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.equal(cell_with_volume(torch.zeros(1, 3, 3), compute_stress=False)[0], torch.eye(3))


def test_stress_of_a_cell_without_volume_is_refused():
    with pytest.raises(ValueError, match="non-zero volume"):
        cell_with_volume(torch.zeros(1, 3, 3), compute_stress=True)
    with pytest.raises(ValueError, match="linearly dependent"):
        cell_with_volume(torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 0]]]), compute_stress=False)


def test_package_inputs_of_a_molecule():
    data = inputs("CH3CH2OH")
    pos, z, edge_index, edge_shift, cell, batch = package_inputs(data, torch.float64, stress=True)
    assert pos is data["pos"] and torch.equal(edge_index, data["edge_index"])
    assert torch.equal(cell[0], torch.eye(3, dtype=torch.float64))  # a molecule: any cell with volume
    assert batch.shape == z.shape and not batch.any() and edge_shift.shape == (edge_index.shape[1], 3)
    assert torch.equal(package_inputs(data, torch.float64, stress=False)[4], data["cell"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("edge_index"), "builds no neighbour list"),
        (lambda d: d.update(pos=d["pos"].float()), "positions are torch.float32"),
        (lambda d: d.update(edge_index=d["edge_index"][:, :1]), "at least 2 atoms and 2 edges"),
        (lambda d: d.update(cell=torch.zeros(2, 3, 3, dtype=torch.float64)), "one structure"),
    ],
)
def test_inputs_a_package_cannot_take_are_refused(change, message):
    data = inputs("CH3CH2OH")
    change(data)
    with pytest.raises(ValueError, match=message):
        package_inputs(data, torch.float64, stress=False)


def test_package_paths_and_files_that_are_not_packages(tmp_path):
    assert is_package("out.pt2") and is_package(tmp_path / "a.pt2") and not is_package("model.pt")
    with pytest.raises(FileNotFoundError, match="package not found"):
        load_package(tmp_path / "absent.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="not a loadable AOTInductor package"):
        load_package(tmp_path / "junk.pt2")
