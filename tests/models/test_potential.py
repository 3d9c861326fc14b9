"""EquivariantPotential: symmetry, derivatives, batching, dtypes, bad input, model files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph
from molequi.models import EquivariantPotential, load_model, save_model
from molequi.testing import (
    finite_difference_force_error,
    finite_difference_stress_error,
    model_equivariance_errors,
    random_o3,
)

SMALL = {"hidden_irreps": "8x0e+4x1o+4x2e", "num_layers": 2, "radial_hidden": (16,), "readout_hidden": 8}
FAMILY_IRREPS = {
    "gate": "8x0e+4x1o+4x2e",
    "norm": "8x0e+4x1o+4x2e",
    "tensor_product": "4x0e+4x1o+4x2e",
    "fourier": "4x0e+4x1o+4x2e",
    "scalar": "8x0e",
}
FAMILY_OPTIONS = {"fourier": {"act": "silu", "resolution": 40}}


def _molecule(dtype=torch.float64, seed=0) -> dict[str, torch.Tensor]:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def _crystal(dtype=torch.float64) -> dict[str, torch.Tensor]:
    atoms = bulk("NaCl", "rocksalt", a=5.0) * (2, 1, 1)
    atoms.rattle(0.1, seed=1)
    atoms.cell[0, 1] += 0.3  # a generic, non-orthogonal cell
    return {
        "z": torch.tensor(atoms.numbers),
        "pos": torch.tensor(atoms.positions, dtype=dtype),
        "cell": torch.tensor(atoms.cell[:], dtype=dtype)[None],
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }


@pytest.mark.parametrize("family", sorted(FAMILY_IRREPS))
def test_equivariant_for_every_nonlinearity(family, float64):
    torch.manual_seed(0)
    options = dict(SMALL, hidden_irreps=FAMILY_IRREPS[family], nonlinearity=family)
    options["nonlinearity_options"] = FAMILY_OPTIONS.get(family, {})
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, **options)
    errors = model_equivariance_errors(model, _molecule())
    # fourier with silu is approximately equivariant; at resolution 40 the error is tiny
    tolerance = 1e-7 if family == "fourier" else 1e-10
    assert max(errors.values()) < tolerance, errors


def test_equivariant_float32(dtype):
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, **SMALL)
    errors = model_equivariance_errors(model, _molecule(dtype))
    assert max(errors.values()) < (1e-10 if dtype == torch.float64 else 1e-4), errors


def test_periodic_equivariance_and_stress(float64):
    torch.manual_seed(0)
    model = EquivariantPotential(["Na", "Cl"], r_max=3.5, **SMALL)
    crystal = _crystal()
    errors = model_equivariance_errors(model, crystal)
    assert max(errors.values()) < 1e-10, errors
    assert finite_difference_stress_error(model, crystal) < 1e-7


def test_forces_match_finite_differences(float64):
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, **SMALL)
    assert finite_difference_force_error(model, _molecule()) < 1e-7
    assert finite_difference_force_error(model, _crystal() | {"z": torch.tensor([1, 6, 1, 6])}) < 1e-7


def test_batch_equals_single_structures(float64):
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, **SMALL)
    graphs = []
    for seed in range(3):
        atoms = molecule(["CH4", "H2O", "CH3CH2OH"][seed])
        atoms.rattle(0.05, seed=seed)
        graphs.append(atoms_to_graph(atoms, r_max=3.0, dtype=torch.float64))
    batched = model(Batch.from_data_list(graphs))
    singles = [model(g) for g in graphs]
    torch.testing.assert_close(batched["energy"], torch.cat([s["energy"] for s in singles]), atol=1e-12, rtol=0)
    torch.testing.assert_close(batched["forces"], torch.cat([s["forces"] for s in singles]), atol=1e-12, rtol=0)


def test_energy_is_sum_of_reference_energies_when_isolated(float64):
    model = EquivariantPotential(["H", "O"], r_max=2.0, atomic_energies={1: -13.6, 8: -432.0}, **SMALL)
    pos = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    out = model({"z": torch.tensor([1, 8, 1]), "pos": pos})
    # isolated atoms see no neighbours: readout of the species embedding plus E0
    isolated = model({"z": torch.tensor([1]), "pos": pos[:1]})["energy"] * 2 + model(
        {"z": torch.tensor([8]), "pos": pos[:1]}
    )["energy"]
    torch.testing.assert_close(out["energy"], isolated)
    assert torch.all(out["forces"] == 0)


def test_unknown_element_and_nan_positions_raise(float64):
    model = EquivariantPotential(["H", "O"], r_max=2.0, **SMALL)
    with pytest.raises(ValueError, match=r"\['C'\] not among the model's species"):
        model({"z": torch.tensor([1, 6]), "pos": torch.zeros(2, 3) + torch.tensor([[0.0], [1.0]])})
    with pytest.raises(ValueError, match="NaN"):
        model({"z": torch.tensor([1, 8]), "pos": torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]])})
    with pytest.raises(ValueError, match="species is empty"):
        EquivariantPotential([], r_max=2.0)


def test_model_file_round_trip_in_fresh_process(tmp_path, float64):
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, atomic_energies={1: -1.0, 6: -2.0, 8: -3.0}, **SMALL)
    path = tmp_path / "model.pt"
    save_model(model, path, statistics={"avg_num_neighbors": 3.5})
    record = torch.load(path, weights_only=True)
    assert record["model"] == "EquivariantPotential" and record["units"]["energy"] == "eV"
    structure = _molecule()
    expected = model.eval()(structure)  # load_model returns the model in eval mode
    torch.save(structure, tmp_path / "input.pt")
    script = (
        "import torch, sys; from molequi.models import load_model\n"
        f"m = load_model(r'{path}'); s = torch.load(r'{tmp_path / 'input.pt'}')\n"
        "o = m(s); torch.save({'energy': o['energy'].detach(), 'forces': o['forces']}, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.pt")], check=True)
    out = torch.load(tmp_path / "out.pt")
    # another process may sum in another order: equal to 1e-12 (float64), not bit for bit
    torch.testing.assert_close(out["energy"], expected["energy"].detach(), rtol=1e-12, atol=0)
    forces_scale = float(expected["forces"].abs().max())
    torch.testing.assert_close(out["forces"], expected["forces"], rtol=1e-12, atol=1e-12 * forces_scale)
    assert load_model(path).statistics == {"avg_num_neighbors": 3.5}


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")


def test_dipole_head_is_a_polar_vector(float64):
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, dipole=True, **SMALL)
    structure = _molecule()
    reference = model(structure, compute_forces=False)["dipole"].detach()
    assert reference.shape == (1, 3)
    for matrix in random_o3(4):
        moved = model(dict(structure, pos=structure["pos"] @ matrix.T), compute_forces=False)["dipole"]
        torch.testing.assert_close(moved, reference @ matrix.T, atol=1e-10, rtol=0)
    shifted = model(dict(structure, pos=structure["pos"] + 5.0), compute_forces=False)["dipole"]
    torch.testing.assert_close(shifted, reference, atol=1e-10, rtol=0)
