"""PerSpeciesEnergy: float64 scale, shift, E0 and total energy whatever the model dtype."""

from __future__ import annotations

import copy

import pytest
import torch
from ase.build import molecule

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential, NBodyNetwork
from molequi.models.energy_head import PerSpeciesEnergy

#: isolated-atom energies of the size of rMD17's (eV): totals of ~-17,600 eV for aspirin
E0 = {1: -13.587, 6: -1029.499, 8: -2041.904}
SMALL = {"hidden_irreps": "8x0e+4x1o", "num_layers": 2, "radial_hidden": (16,), "readout_hidden": 8, "lmax": 1}


def _aspirin(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Benzene and acetic acid 6 Å apart (20 atoms, C8H10O2: aspirin-sized energies)."""
    atoms = molecule("C6H6") + molecule("CH3COOH")
    atoms.positions[-8:] += (6.0, 0.0, 0.0)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


@pytest.mark.parametrize("model_class", [EquivariantPotential, NBodyNetwork])
def test_float32_model_has_no_reference_energy_rounding(model_class):
    """Same weights in float32 and float64: energies agree to the network's rounding, not E0's."""
    torch.manual_seed(0)
    options = dict(SMALL, atomic_energies=E0, shift={1: -0.31, 6: 0.42, 8: -0.77}, scale=0.7)
    if model_class is NBodyNetwork:
        options = {k: v for k, v in options.items() if k != "num_layers"} | {"num_levels": 2}
    with default_dtype(torch.float64):
        model64 = model_class([1, 6, 8], r_max=4.0, **options)
    model32 = copy.deepcopy(model64).float()
    assert model32.energy_head.atomic_energies.dtype == torch.float64
    e64 = model64(_aspirin(torch.float64), compute_forces=False)["energy"]
    e32 = model32(_aspirin(torch.float32), compute_forces=False)["energy"]
    assert e32.dtype == torch.float64
    # totals are ~-20,000 eV: float32 would resolve ~2e-3 eV; the network's own rounding is ~1e-5 eV
    error = float((e32 - e64).detach())
    assert abs(error) < 5e-5, error


def test_buffers_move_devices_but_stay_float64():
    head = PerSpeciesEnergy([1, 6], scale=2.0, shift={1: 0.5, 6: -0.5}, atomic_energies={1: -13.6, 6: -1029.499123})
    head = head.to(torch.float32).half()
    assert all(t.dtype == torch.float64 for t in (head.scale, head.shift, head.atomic_energies))
    out = head(torch.tensor([1.0, 1.0], dtype=torch.float32), torch.tensor([0, 1]))
    assert out.dtype == torch.float64
    assert out.tolist() == pytest.approx([2.0 + 0.5 - 13.6, 2.0 - 0.5 - 1029.499123], abs=1e-12)


@pytest.mark.parametrize("argument", ["scale", "shift", "atomic_energies"])
def test_incomplete_per_species_mapping_names_the_element(argument):
    with pytest.raises(ValueError, match=rf"{argument}: no value for O \(Z=8\)"):
        EquivariantPotential([1, 6, 8], **SMALL, **{argument: {1: 1.0, 6: 1.0}})


def test_symbols_as_keys():
    model = EquivariantPotential(["H", "O"], **SMALL, atomic_energies={"H": -13.6, "O": -2041.9})
    assert model.energy_head.atomic_energies.tolist() == [-13.6, -2041.9]
    assert model.config["atomic_energies"] == {1: -13.6, 8: -2041.9}


def test_hidden_irreps_without_leading_scalars_still_embed_species():
    """A ``hidden_irreps`` that starts with 1o embeds into its 0e part (was: a constant network)."""
    model = EquivariantPotential([1, 8], hidden_irreps="4x1o+8x0e", num_layers=1, lmax=1, radial_hidden=(8,))
    assert str(model.embedding.irreps_out) == "8x0e"
    with pytest.raises(ValueError, match="no even scalars"):
        EquivariantPotential([1, 8], hidden_irreps="4x1o+4x0o", num_layers=1, lmax=1)
