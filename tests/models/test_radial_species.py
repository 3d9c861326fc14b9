"""EquivariantPotential(radial_species=True): radial weights conditioned on both endpoints' species."""

from __future__ import annotations

import torch
from ase.build import molecule

from molequi.models import EquivariantPotential, load_model, save_model
from molequi.testing import finite_difference_force_error, model_equivariance_errors

SMALL = {"hidden_irreps": "8x0e+4x1o+4x2e", "num_layers": 2, "radial_hidden": (16,), "readout_hidden": 8}


def _ethanol(dtype=torch.float64) -> dict[str, torch.Tensor]:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def _model(**options) -> EquivariantPotential:
    torch.manual_seed(0)
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, radial_species=True, **(SMALL | options))
    with torch.no_grad():  # off the initial values, so that every input of the radial MLP matters
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model


def test_equivariant_and_conservative(float64):
    model = _model()
    errors = model_equivariance_errors(model, _ethanol())
    assert max(errors.values()) < 1e-10, errors
    assert finite_difference_force_error(model, _ethanol()) < 1e-7


def test_energy_smooth_through_the_cutoff(float64):
    """A hydrogen pulled out of r_max of its neighbours: energy and forces go to their limits smoothly."""
    model = _model()
    z = torch.tensor([8, 1, 1])
    distances = torch.linspace(2.9, 3.1, 201, dtype=torch.float64)
    energies, forces = [], []
    for d in distances:
        pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
        pos[2, 1] = d
        out = model({"z": z, "pos": pos})
        energies.append(float(out["energy"].detach()))
        forces.append(out["forces"][2].detach())
    steps = torch.tensor(energies).diff().abs()
    assert float(steps.max()) < 1e-6  # (0.001 Å steps; a species-dependent jump at r_max would be ~0.1 eV)
    assert float(torch.stack(forces)[-20:].norm(dim=1).max()) < 1e-9  # beyond r_max the atom is free


def test_model_file_round_trip(float64, tmp_path):
    model = _model().eval()
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config["radial_species"] is True
    expected = model(_ethanol(), compute_forces=False)["energy"]
    assert torch.allclose(loaded(_ethanol(), compute_forces=False)["energy"], expected, rtol=0, atol=1e-12)
